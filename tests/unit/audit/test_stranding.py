"""The older-generation rule: a kernel whose only code is plain SASS of an older generation (no PTX)
cannot run on the cell (on an H200, sm_80-only SASS failed at launch with cudaErrorNoKernelImageForDevice);
engine-declared old-GPU-only kernels (vLLM's Turing Marlin instantiations, AllSpark) warn instead.

Kernel names below are real ENTRY symbols from the vllm 0.20.2 wheel (`cuobjdump --dump-elf-symbols`).
"""

from __future__ import annotations

import json

import pytest

from builder.checkresult import FAIL, PASS
from builder.audit import rules as ka
from builder.audit.report import KernelAuditReport, judge
from builder.audit.rules import OLDER_GENERATION, PTX, SAME_FAMILY, SASS, DeviceTarget, KernelImage
from builder.engines import DispatchOnly, engine_module

MARLIN_SM75 = ("_ZN6marlin6MarlinILl1125899906910725ELl562949953487106ELl1125899906910725ELl2814749767172868ELi256ELi3"
               "ELi16ELi4ELb1ELi4ELb0EEEvPK4int4S4_PS2_S5_S4_S4_PKiS7_S7_PKfiiiibiiii")
ALLSPARK = "_ZN8allspark29f16_gemm_splitk_reduce_kernelI6__halfEEvPKT_PS2_iii"
MOE_MARLIN = "_ZN16marlin_moe_wna166MarlinILl1125899906910725ELl562949953487106EEEvv"


def sass(arch: str) -> DeviceTarget:
    return DeviceTarget(SASS, arch)


def ptx(arch: str) -> DeviceTarget:
    return DeviceTarget(PTX, arch)


def image(target: DeviceTarget, *kernels: str) -> KernelImage:
    return KernelImage(target, frozenset(kernels))


@pytest.mark.parametrize("targets, cell, expected", [
    ((sass("sm_80"),), "sm_90", OLDER_GENERATION),  # the H200 failure
    ((sass("sm_80"), sass("sm_86"), sass("sm_89")), "sm_90", OLDER_GENERATION),
    ((sass("sm_75"),), "sm_121a", OLDER_GENERATION),
    ((sass("sm_80"), sass("sm_90a")), "sm_120", OLDER_GENERATION),  # plain old code, nothing for 12.x
    ((sass("sm_80"), ptx("sm_80")), "sm_90", None),  # PTX JITs forward
    ((sass("sm_80"), ptx("sm_80a")), "sm_90", OLDER_GENERATION),  # arch-specific PTX does not
    ((sass("sm_90"),), "sm_90", None),
    ((sass("sm_86"),), "sm_89", None),  # same major, later minor
    ((sass("sm_89"),), "sm_86", SAME_FAMILY),  # never backwards
    ((sass("sm_120a"),), "sm_121a", SAME_FAMILY),
    ((sass("sm_89"), sass("sm_120")), "sm_90", None),  # built for Ada and Blackwell, skipping Hopper: dispatch
    ((sass("sm_100f"),), "sm_90", None),  # newer only
    ((sass("sm_90a"), sass("sm_100f")), "sm_120", None),  # arch/family-specific code of other generations
    ((sass("sm_90a"),), "sm_120", None),
    ((), "sm_90", None),
])
def test_stranding(targets, cell, expected):
    assert ka.stranding(targets, cell) == expected


@pytest.mark.parametrize("targets, cell, expected", [
    ((sass("sm_90"), sass("sm_80")), "sm_90", True),  # the old rule said False: the blind spot
    ((sass("sm_90"), sass("sm_90a"), sass("sm_75")), "sm_90", True),
    ((sass("sm_90"), sass("sm_90a")), "sm_90", False),
    ((sass("sm_90"), sass("sm_100f"), sass("sm_120")), "sm_90", False),  # only newer code besides
    ((sass("sm_80"),), "sm_90", False),  # nothing runs: the listing decides
    ((sass("sm_120"), sass("sm_90a")), "sm_121a", False),
])
def test_needs_kernel_scan_looks_at_older_plain_sass(targets, cell, expected):
    assert ka.needs_kernel_scan(targets, cell) is expected


H200_SPLIT = (image(sass("sm_90"), "_Z1kPf"), image(sass("sm_80"), "_Z2kbPf"))


def test_a_kernel_with_only_sm_80_sass_fails_an_sm_90_library_naming_it():
    audit = judge("libsplit90.so", (sass("sm_90"), sass("sm_80")), "sm_90", H200_SPLIT)
    assert audit.verdict == FAIL and audit.stranded == ("_Z2kbPf",) and audit.reasons == (OLDER_GENERATION,)
    assert audit.detail == "carries sm_80 only for 1 of 2 kernels (e.g. _Z2kbPf); no SASS or PTX usable on sm_90"
    assert audit.to_dict()["stranded_reasons"] == ["older_generation"]


def test_ptx_for_the_old_kernel_passes():
    images = (*H200_SPLIT, image(ptx("sm_80"), "_Z2kbPf"))
    audit = judge("libsplit90ptx.so", (sass("sm_90"), sass("sm_80"), ptx("sm_80")), "sm_90", images)
    assert audit.verdict == PASS and audit.detail == "runs on sm_90: sm_90 SASS"


def test_kernels_for_newer_gpus_only_do_not_fail_an_older_cell():
    images = (image(sass("sm_90"), "a"), image(sass("sm_100f"), "b"), image(sass("sm_89"), "c"),
              image(sass("sm_120"), "c"))
    assert judge("lib.so", (sass("sm_90"), sass("sm_100"), sass("sm_89"), sass("sm_120")), "sm_90",
                 images).verdict == PASS


DECLARED = (DispatchOnly(name="marlin-sm75", archs=("sm_75",), kernels=("_ZN6marlin6Marlin*",),
                         evidence="Turing instantiations"),)


def test_a_declared_old_gpu_kernel_is_a_named_warning():
    images = (image(sass("sm_90"), "_Z1kPf"), image(sass("sm_75"), MARLIN_SM75))
    audit = judge("vllm/_C.abi3.so", (sass("sm_90"), sass("sm_75")), "sm_90", images, dispatch_only=DECLARED)
    assert audit.verdict == PASS and audit.stranded == ()
    assert audit.detail == "runs on sm_90: sm_90 SASS; warning marlin-sm75 (1 old-GPU-only kernels)"
    (warning,) = audit.warnings
    assert (warning.name, warning.kernels, warning.archs) == ("marlin-sm75", (MARLIN_SM75,), ("sm_75",))
    done = KernelAuditReport(cell_arch="sm_90", root="/site", libraries=(audit,))
    assert done.ok and done.summary() == "kernel audit sm_90: PASS (1 pass, 0 fail, 0 skipped, 1 warnings)"
    data = json.loads(json.dumps(done.to_dict()))
    assert data["warnings"] == [(f"vllm/_C.abi3.so marlin-sm75: 1 kernels with sm_75 SASS only "
                                 f"(e.g. {MARLIN_SM75}); Turing instantiations")]
    assert data["libraries"][0]["warnings"][0]["name"] == "marlin-sm75"


def test_a_declaration_excuses_only_the_archs_it_names():
    images = (image(sass("sm_90"), "_Z1kPf"), image(sass("sm_80"), MARLIN_SM75))  # Marlin lost its sm_90 code
    audit = judge("vllm/_C.abi3.so", (sass("sm_90"), sass("sm_80")), "sm_90", images, dispatch_only=DECLARED)
    assert audit.verdict == FAIL and audit.stranded == (MARLIN_SM75,) and not audit.warnings


def test_a_declaration_never_excuses_same_family_code():
    declared = (DispatchOnly(name="x", archs=("sm_120a",), kernels=("*",), evidence="e"),)
    images = (image(sass("sm_121a"), "a"), image(sass("sm_120a"), "b"))
    audit = judge("lib.so", (sass("sm_121a"), sass("sm_120a")), "sm_121a", images, dispatch_only=declared)
    assert audit.verdict == FAIL and audit.reasons == (SAME_FAMILY,)


def test_undeclared_kernels_still_fail_beside_declared_ones():
    images = (image(sass("sm_90"), "_Z1kPf"), image(sass("sm_75"), MARLIN_SM75), image(sass("sm_80"), "_Z2kbPf"))
    audit = judge("lib.so", (sass("sm_90"), sass("sm_75"), sass("sm_80")), "sm_90", images, dispatch_only=DECLARED)
    assert audit.verdict == FAIL and audit.stranded == ("_Z2kbPf",) and audit.warnings[0].name == "marlin-sm75"
    assert audit.detail.startswith("carries sm_80 only for 1 of 3 kernels")


@pytest.mark.parametrize("kernel, targets, cell, name", [
    (MARLIN_SM75, (sass("sm_75"),), "sm_90", "marlin-sm75"),
    (MOE_MARLIN, (sass("sm_75"),), "sm_121a", "marlin-sm75"),
    (ALLSPARK, (sass("sm_80"), sass("sm_86"), sass("sm_89")), "sm_90", "allspark-ampere"),
    ("_ZN4vllm25fused_add_rms_norm_kernelIN3c108BFloat16ELi8EEEvv", (sass("sm_75"),), "sm_120", "rms-norm-sm75"),
    (ALLSPARK, (sass("sm_80"), sass("sm_90")), "sm_100", None),  # sm_90 is not what AllSpark is built for
    ("_Z2kbPf", (sass("sm_80"),), "sm_90", None),
])
def test_vllm_declares_its_old_gpu_kernels(kernel, targets, cell, name):
    assert ka.stranding(targets, cell) == OLDER_GENERATION
    found = ka.dispatch_match(targets, kernel, engine_module("vllm").audit_dispatch_only)
    assert (found.name if found else None) == name
    assert found is None or found.evidence
