# Toy Gaussian-mixture worlds with closed-form noised scores, for reproducing the paper's 1D/2D studies.
