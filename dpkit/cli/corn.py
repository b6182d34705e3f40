"""``dpkit corn-dsgd``: the privacy noise left after one gossip step under LDP, DECOR and CorN on one graph.

A thin layer over :func:`dpkit.distributed.noise_variances`. The DECOR and CorN covariances are semidefinite
programs solved with cvxpy (the ``corn`` extra: ``pip install 'dpkit[corn]'``); without it the command says so.
"""

from __future__ import annotations

import click

from dpkit.cli import options as opt

__all__ = ["corn_dsgd", "TOPOLOGIES"]

# CLI name -> dpkit.distributed's registered topology name
TOPOLOGIES = {"ring": "ring", "complete": "complete", "erdos-renyi": "erdos_renyi", "torus": "torus"}
MAX_AGENTS = 64  # the semidefinite programs grow fast: 32 agents take ~15 s, 64 several minutes
EXIT_MISSING_EXTRA = 1


@opt.command(
    "corn-dsgd",
    "Noise variance after one gossip step: LDP vs DECOR vs CorN on a graph.",
    (EXIT_MISSING_EXTRA, "cvxpy (the corn extra) is not installed"),
)
@opt.choice_option("--topology", choices=TOPOLOGIES, default="ring")
@opt.count_option(
    "--agents", minimum=2, maximum=MAX_AGENTS, default=16, help="Number of agents (time grows fast with it)."
)
@opt.checked_option("--epsilon", type=opt.POSITIVE, required=True, help="Target epsilon of the whole run.")
@opt.checked_option("--delta", type=opt.OPEN_UNIT, default=1e-5, help="Target delta.")
@opt.count_option("--rounds", minimum=1, maximum=10**7, default=5000, help="Gossip rounds of the run.")
@opt.checked_option("--clip-norm", type=opt.POSITIVE, default=0.1, help="Per-sample clipping norm C.")
@opt.checked_option(
    "--edge-probability", type=opt.PROBABILITY, default=0.5, help="Erdos-Renyi: probability of each edge."
)
@opt.seed_option("Seed of the Erdos-Renyi graph.")
@opt.json_option("Print one JSON object {ldp, decor, corn, seconds, ...}.")
def corn_dsgd(topology, agents, epsilon, delta, rounds, clip_norm, edge_probability, seed, as_json):
    """Compare the privacy noise of decentralized SGD after one gossip step, trace(W Sigma W^T), for independent
    noise (LDP), pairwise-cancelling noise (DECOR) and optimized correlated noise (CorN), each calibrated so that
    --rounds rounds are (epsilon, delta)-DP for one sample of one agent (replace-one), with Metropolis-Hastings
    gossip weights on the graph.

    \b
    Example:
      dpkit corn-dsgd --topology ring --agents 16 --epsilon 1 --json
    """
    import importlib.util

    if importlib.util.find_spec("cvxpy") is None:
        raise click.ClickException(
            "the DECOR and CorN covariances are semidefinite programs solved with cvxpy, which is not installed: "
            "pip install 'dpkit[corn]'"
        )
    from dpkit.distributed import noise_variances

    try:
        out = noise_variances(
            TOPOLOGIES[topology],
            agents,
            epsilon,
            delta=delta,
            rounds=rounds,
            clip_norm=clip_norm,
            edge_probability=edge_probability,
            seed=seed,
        )
    except ImportError as err:  # cvxpy found but broken
        raise click.ClickException(str(err)) from None
    except (ValueError, TypeError, OverflowError) as err:
        raise click.UsageError(str(err)) from None
    result = {
        "topology": topology,
        "agents": agents,
        "epsilon": float(epsilon),
        "delta": float(delta),
        "rounds": rounds,
        "clip_norm": float(clip_norm),
        **out,
    }
    if as_json:
        opt.echo_json(result)
        return
    click.echo(
        f"noise variance after one gossip step ({topology}, {agents} agents, epsilon={epsilon:g}, delta={delta:g}, "
        f"{rounds} rounds, C={clip_norm:g}):"
    )
    for name in ("ldp", "decor", "corn"):
        click.echo(f"  {name.upper():<6} {out[name]:.6g}  ({out[name] / out['ldp']:.1%} of LDP)")
    click.echo(f"{out['seconds']:.1f} s")
