"""Stage 5, smoke: boot an image, check it, audit its kernels, report."""
