"""The one process setting made for speed on CPUs. The `badapple-jax` command makes it for itself; a library
import never changes the caller's environment, so a program using the API opts in with `use_eigen_matmuls()`."""
import os

YNN_OFF = "--xla_cpu_experimental_ynn_fusion_type="


def use_eigen_matmuls() -> None:
    """Turn off XLA's YNNPACK fusions in this process's XLA_FLAGS (unless XLA_FLAGS names them already): they run
    this optimiser's [B*T, 2 d_head] x [2 d_head, n_embd] backward matmul at under half the speed of XLA's Eigen
    path on x86 CPUs (benchmarks/RESULTS.md). CPU-only, no result changes beyond float rounding; it takes effect
    only when called before JAX starts its backend (the first computation or `jax.devices()`)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {YNN_OFF}".strip()
