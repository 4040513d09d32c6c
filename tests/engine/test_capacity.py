from __future__ import annotations

from advisor.engine.capacity import ReplicaConfig
from advisor.engine.catalog import DEFAULT_CATALOG


def config(model: str, hardware: str, weight_dtype: str = "bf16") -> ReplicaConfig:
    return ReplicaConfig(
        DEFAULT_CATALOG.model(model),
        DEFAULT_CATALOG.gpu(hardware),
        weight_dtype,
        tensor_parallel=1,
        max_num_seqs=256,
        max_num_batched_tokens=8192,
    )


def test_it_lists_the_tensor_parallel_sizes_a_replica_fits_at() -> None:
    # Llama-3-70B BF16: 141 GB of weights need 132.8 GiB with the workspace at TP1, more
    # than an H100's 71.7 GiB at 0.9; at TP2, 70.6 GB a device of 77.0 GB usable
    seventy = config("Llama-3-70B", "H100-SXM")
    assert seventy.fitting_tensor_parallel(8) == [2, 4, 8]
    assert seventy.fitting_tensor_parallel(4) == [2, 4]
    assert seventy.fitting_tensor_parallel(1) == []
    assert config("Llama-3-8B", "L4").fitting_tensor_parallel(8) == [1, 2, 4, 8]
