"""dmlbench: a benchmark and ablation harness for deep metric learning in image retrieval."""

__version__ = "0.1.0"
