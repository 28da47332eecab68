"""The method: sparse VD layers and their KL (Eq. 14, ARD), the objective, sparsify, stats, the LeNets."""
