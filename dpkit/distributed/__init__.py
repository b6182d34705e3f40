"""Private distributed learning on torch.distributed (or simulated in one process): DIFF2 and CorN-DSGD."""

from dpkit.distributed.accounting import calibrate_rounds, epsilon_of_rounds, rounds_event, zcdp_noise_multiplier
from dpkit.distributed.comm import (
    Communicator,
    SimulatedCommunicator,
    TorchCommunicator,
    default_backend,
    init_process_group,
    process_group,
)
from dpkit.distributed.diff2 import Diff2, Diff2Config, RoundInfo
from dpkit.distributed.launch import run_processes
from dpkit.distributed.per_sample import module_loss

__all__ = [
    "Communicator",
    "Diff2",
    "Diff2Config",
    "RoundInfo",
    "SimulatedCommunicator",
    "TorchCommunicator",
    "calibrate_rounds",
    "default_backend",
    "epsilon_of_rounds",
    "init_process_group",
    "module_loss",
    "process_group",
    "rounds_event",
    "run_processes",
    "zcdp_noise_multiplier",
]
