"""Private distributed learning on torch.distributed, or simulated in one process: DIFF2 and CorN-DSGD.

* :class:`Diff2` (with :class:`Diff2Config`): DIFF2-GD, a server-based method whose nodes send clipped gradient
  differences (Murata and Suzuki, ICML 2023); ``restart_period=1`` is DP-GD.
* :class:`CornDSGD` (with :class:`CornConfig` and a covariance from :func:`corn_noise` or
  :func:`solve_covariance`): decentralized SGD with privacy noise correlated across agents (LDP, DECOR, CorN);
  :func:`noise_variances` compares the three covariances on a graph.
* One communication layer for both (:class:`Communicator`): :class:`TorchCommunicator` (a rank per agent; launch
  with torchrun and :func:`process_group`, or :func:`run_processes` on one machine) or
  :class:`SimulatedCommunicator` (every agent in this process, vectorized; the same numbers for the same seed).
"""

from dpkit.distributed.accounting import calibrate_rounds, epsilon_of_rounds, rounds_event, zcdp_noise_multiplier
from dpkit.distributed.comm import (
    Communicator,
    SimulatedCommunicator,
    TorchCommunicator,
    default_backend,
    init_process_group,
    process_group,
)
from dpkit.distributed.corn_dsgd import CornConfig, CornDSGD, CorrelatedNoise, corn_noise
from dpkit.distributed.covariance import (
    NoiseCovariance,
    available_mechanisms,
    certify,
    gossip_noise_variance,
    noise_variances,
    privacy_bound,
    register_mechanism,
    solve_covariance,
    zcdp_privacy_bound,
)
from dpkit.distributed.diff2 import Diff2, Diff2Config, RoundInfo
from dpkit.distributed.launch import run_processes
from dpkit.distributed.partition import split_among_agents
from dpkit.distributed.per_sample import module_loss
from dpkit.distributed.topology import (
    available_topologies,
    complete,
    erdos_renyi,
    make_topology,
    metropolis_hastings,
    register_topology,
    ring,
    torus,
)

__all__ = [
    "Communicator",
    "CornConfig",
    "CornDSGD",
    "CorrelatedNoise",
    "Diff2",
    "Diff2Config",
    "NoiseCovariance",
    "RoundInfo",
    "SimulatedCommunicator",
    "TorchCommunicator",
    "available_mechanisms",
    "available_topologies",
    "calibrate_rounds",
    "certify",
    "complete",
    "corn_noise",
    "default_backend",
    "epsilon_of_rounds",
    "erdos_renyi",
    "gossip_noise_variance",
    "init_process_group",
    "make_topology",
    "metropolis_hastings",
    "module_loss",
    "noise_variances",
    "privacy_bound",
    "process_group",
    "register_mechanism",
    "register_topology",
    "ring",
    "rounds_event",
    "run_processes",
    "solve_covariance",
    "split_among_agents",
    "torus",
    "zcdp_noise_multiplier",
    "zcdp_privacy_bound",
]
