"""Stage 9, measure: decode speed: the concurrency sweep (streamed requests, SSE), its numbers, the noise-aware A/B gate and the interleaved measurement of a known-good beside a candidate."""
