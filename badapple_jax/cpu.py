"""XLA's CPU matmul path for one compiled chunk program, chosen by its solver (measured: benchmarks/RESULTS.md).

XLA's YNNPACK fusions, on by default, run the q/k and head-space steps fastest (x0.83 the q/k step's CPU time of
XLA's Eigen path); the embedding solver's [B*T, 2 d_head] x [2 d_head, n_embd] backward matmul runs faster on the
Eigen path. So the option is the program's (`compiler_options`, passed to its compile), not the process's: neither
the command nor the library touches XLA_FLAGS, and a user's XLA_FLAGS that names the option wins."""
import os

YNN = "xla_cpu_experimental_ynn_fusion_type"  # "" turns the YNNPACK fusions off: XLA's Eigen matmuls


def compiler_options(eigen_matmuls: bool, platform: str) -> dict[str, str]:
    """The compile options of a program on `platform` whose solver runs faster on XLA's Eigen matmuls (the
    solver's EIGEN_MATMULS) or not; CPU-only, no result changes beyond float rounding."""
    if platform != "cpu" or not eigen_matmuls or YNN in os.environ.get("XLA_FLAGS", ""):
        return {}
    return {YNN: ""}
