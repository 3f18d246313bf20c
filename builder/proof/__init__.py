"""Stage 10, proof: one image through the kernel audit, the smoke checks and the speed measurement, assembled into one SmokeReport (a container from the registry, or servers at URLs)."""
