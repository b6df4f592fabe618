"""Speed measurements against their floor: loss kernels vs the matrix-multiply floor (`time_losses`),
retrieval metrics vs GEMM (`bench_eval`), and a training step's input pipeline and compute (`bench_train`)."""
