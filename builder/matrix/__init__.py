"""Stage 1, describe: matrix.yaml -> Matrix -> cells -> selection (pure)."""
