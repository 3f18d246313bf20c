"""Stage 11, attest: an image's SBOM, provenance and smoke verdict as signed in-toto attestations, attached by digest and verified.
"""
