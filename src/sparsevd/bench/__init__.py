"""The benchmarks behind make bench: training epochs against plain references, inference of exported files."""
