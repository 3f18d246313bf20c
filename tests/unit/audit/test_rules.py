"""The kernel audit's pure core: cuobjdump output parsing, the compatibility rule, verdicts.

Fixtures are real cuobjdump 13.5 output (nvidia-cuda-cuobjdump wheel) on libraries built with
nvcc 13.0, and on vllm 0.16.0's PyPI wheel (trimmed where marked). cuobjdump prints the
`cuobjdump info` lines on stderr; they are kept here to show the parser ignores them.
"""

from __future__ import annotations

import json
import stat
import textwrap

import pytest

from builder.checkresult import FAIL, PASS, SKIP
from builder.audit import cuobjdump as kc
from builder.audit import rules as ka
from builder.audit.report import KernelAuditReport, judge
from builder.audit.rules import PTX, SASS, DeviceTarget, runs_on
from builder.errors import InputError, StepFailed

# nvcc -shared -Xcompiler -fPIC -gencode arch=compute_121a,code=sm_121a -o libk121a.so k.cu
LIST_121A = """\
ELF file    1: libk121a.1.sm_121a.cubin
ELF file    2: libk121a.2.sm_121a.cubin
cuobjdump info    : No PTX file found to extract from '/work/research/kernels/libk121a.so'. You may try with -all option.
"""
# ... arch=compute_120a,code=sm_120a
LIST_120A = """\
ELF file    1: libk120a.1.sm_120a.cubin
ELF file    2: libk120a.2.sm_120a.cubin
cuobjdump info    : No PTX file found to extract from '/work/research/kernels/libk120a.so'. You may try with -all option.
"""
# ... arch=compute_120,code=compute_120 (PTX only; cuobjdump names compute_120 PTX "sm_120.ptx")
LIST_PTX120 = """\
PTX file    1: libkptx120.1.sm_120.ptx
cuobjdump info    : No ELF file found to extract from '/work/research/kernels/libkptx120.so'. You may try with -all option.
"""
# ... -gencode arch=compute_90a,code=sm_90a -gencode arch=compute_120a,code=sm_120a
LIST_MIX = """\
ELF file    1: libkmix.1.sm_90a.cubin
ELF file    2: libkmix.2.sm_120a.cubin
ELF file    3: libkmix.3.sm_90a.cubin
ELF file    4: libkmix.4.sm_120a.cubin
cuobjdump info    : No PTX file found to extract from '/work/research/kernels/libkmix.so'. You may try with -all option.
"""
# ... sm_120f, sm_121f, sm_103f (from compute_100f), sm_80, sm_75: the listing drops the `f`
LIST_FAMILY = """\
ELF file    1: libkfam.1.sm_120.cubin
ELF file    2: libkfam.2.sm_121.cubin
ELF file    3: libkfam.3.sm_103.cubin
ELF file    4: libkfam.4.sm_80.cubin
ELF file    5: libkfam.5.sm_75.cubin
ELF file    6: libkfam.6.sm_120.cubin
"""
# ... code=compute_120a, compute_120f, compute_121f, compute_121a, compute_90a, compute_90: PTX keeps `a`/`f`
LIST_PTX_FLAVOURS = """\
PTX file    1: libkptxs.1.sm_120a.ptx
PTX file    2: libkptxs.2.sm_120f.ptx
PTX file    3: libkptxs.3.sm_121f.ptx
PTX file    4: libkptxs.4.sm_121a.ptx
PTX file    5: libkptxs.5.sm_90a.ptx
PTX file    6: libkptxs.6.sm_90.ptx
"""
# nvcc -arch=sm_121a (one `cuobjdump -lelf -lptx` call): nvcc 13.0 also embeds plain compute_121 PTX
LIST_ARCH_SHORTHAND = """\
ELF file    1: libkarch.1.sm_121a.cubin
PTX file    1: libkarch.1.sm_121.ptx
ELF file    2: libkarch.2.sm_121a.cubin
PTX file    2: libkarch.2.sm_121a.ptx
"""
# nvcc -cubin: a bare cubin has no index in its name
LIST_BARE_CUBIN = "ELF file    1: raw120a.sm_120a.cubin\n"
# vllm 0.16.0 wheel, vllm/_C.abi3.so (349 lines, excerpt)
LIST_VLLM_C = """\
ELF file    1: _C.abi3.1.sm_70.cubin
ELF file    2: _C.abi3.2.sm_75.cubin
ELF file    3: _C.abi3.3.sm_80.cubin
ELF file    4: _C.abi3.4.sm_89.cubin
ELF file    5: _C.abi3.5.sm_90.cubin
ELF file    6: _C.abi3.6.sm_100.cubin
ELF file  266: _C.abi3.266.sm_120a.cubin
PTX file   26: _C.abi3.26.sm_89.ptx
ELF file  303: _C.abi3.303.sm_52.cubin
PTX file   27: _C.abi3.27.sm_52.ptx
ELF file  318: _C.abi3.318.sm_100a.cubin
ELF file  320: _C.abi3.320.sm_120.cubin
"""
# Two translation units in one library: a.cu for sm_121a, b.cu for sm_120a only (`--dump-elf-symbols`).
DUMP_SPLIT = """
Fatbin elf code:
================
arch = sm_121a
code version = [1,8]
host = linux
compile_size = 64bit

symbols:
OBJECT        WEAK    DEFAULT    -                                 U  .nv.reservedSmem.offset0
NOTYPE        WEAK    DEFAULT    RESERVED_SHARED                      __nv_reservedSMEM_offset_0_alias
FUNC          GLOBAL  DEFAULT    ENTRY                                _Z2kaPf

Fatbin elf code:
================
arch = sm_120a
code version = [1,8]
host = linux
compile_size = 64bit

symbols:
OBJECT        WEAK    DEFAULT    -                                 U  .nv.reservedSmem.offset0
NOTYPE        WEAK    DEFAULT    RESERVED_SHARED                      __nv_reservedSMEM_offset_0_alias
FUNC          GLOBAL  DEFAULT    ENTRY                                _Z2kbPf
"""
# vllm 0.16.0 _C.abi3.so `--dump-elf-symbols`, three of its 349 images, OBJECT LOCAL lines trimmed:
# the NVFP4 activation kernels exist for sm_100a and sm_120a only.
DUMP_VLLM = """
Fatbin elf code:
================
arch = sm_120
code version = [1,8]
host = linux
compile_size = 64bit

symbols:
OBJECT        WEAK    DEFAULT    -                                 U  .nv.reservedSmem.offset0
NOTYPE        WEAK    DEFAULT    RESERVED_SHARED                      __nv_reservedSMEM_offset_0_alias
OBJECT        LOCAL   DEFAULT    -                                    _ZN46_INTERNAL_fb4eded9_15_permute_cols_cu_150ce93a4cuda3std3__45__cpo5beginE
FUNC          GLOBAL  DEFAULT    ENTRY                                _Z19permute_cols_kernelPK4int4PKiPS_iii

Fatbin elf code:
================
arch = sm_100a
code version = [1,8]
host = linux
compile_size = 64bit

symbols:
OBJECT        WEAK    DEFAULT    -                                 U  .nv.reservedSmem.offset0
FUNC          GLOBAL  DEFAULT    ENTRY                                _ZN4vllm24silu_mul_cvt_fp16_to_fp4I13__nv_bfloat16Lb0EEEviiiPKT_PKfPjS7_
FUNC          GLOBAL  DEFAULT    ENTRY                                _ZN4vllm24silu_mul_cvt_fp16_to_fp4I6__halfLb0EEEviiiPKT_PKfPjS7_

Fatbin elf code:
================
arch = sm_120a
code version = [1,8]
host = linux
compile_size = 64bit

symbols:
OBJECT        WEAK    DEFAULT    -                                 U  .nv.reservedSmem.offset0
OBJECT        LOCAL   DEFAULT    -                                    _ZN71_INTERNAL_b6c2d2d3_40_activation_nvfp4_quant_fusion_kernels_cu_1b6daf254cuda3std3__45__cpo5beginE
FUNC          GLOBAL  DEFAULT    ENTRY                                _ZN4vllm24silu_mul_cvt_fp16_to_fp4I13__nv_bfloat16Lb0EEEviiiPKT_PKfPjS7_
FUNC          GLOBAL  DEFAULT    ENTRY                                _ZN4vllm24silu_mul_cvt_fp16_to_fp4I6__halfLb0EEEviiiPKT_PKfPjS7_
"""
# `--dump-elf-symbols` keeps the family suffix the listing drops (libkfam.so, first image)
DUMP_FAMILY_HEADER = """
Fatbin elf code:
================
arch = sm_120f
code version = [1,8]
host = linux
compile_size = 64bit

symbols:
"""
# `--dump-ptx` of the compute_120 PTX-only library (PTX body trimmed after the entry)
DUMP_PTX120 = """
Fatbin ptx code:
================
arch = sm_120
code version = [9,0]
host = linux
compile_size = 64bit
compressed
ptxasOptions = 

.version 9.0
.target sm_120
.address_size 64



.visible .entry _Z1kPf(
.param .u64 .ptr .align 1 _Z1kPf_param_0
)
{
ret;
}
"""


def sass(arch: str) -> DeviceTarget:
    return DeviceTarget(SASS, arch)


def ptx(arch: str) -> DeviceTarget:
    return DeviceTarget(PTX, arch)


def listing(text: str) -> tuple[DeviceTarget, ...]:
    return ka.parse_listing(text.splitlines())


@pytest.mark.parametrize("text, expected", [
    (LIST_121A, [sass("sm_121a")]),
    (LIST_120A, [sass("sm_120a")]),
    (LIST_PTX120, [ptx("sm_120")]),
    (LIST_MIX, [sass("sm_90a"), sass("sm_120a")]),
    (LIST_FAMILY, [sass("sm_120"), sass("sm_121"), sass("sm_103"), sass("sm_80"), sass("sm_75")]),
    (LIST_PTX_FLAVOURS, [ptx(a) for a in ("sm_120a", "sm_120f", "sm_121f", "sm_121a", "sm_90a", "sm_90")]),
    (LIST_ARCH_SHORTHAND, [sass("sm_121a"), ptx("sm_121"), ptx("sm_121a")]),
    (LIST_BARE_CUBIN, [sass("sm_120a")]),
    (LIST_VLLM_C, [sass(a) for a in ("sm_70", "sm_75", "sm_80", "sm_89", "sm_90", "sm_100", "sm_120a")]
     + [ptx("sm_89"), sass("sm_52"), ptx("sm_52"), sass("sm_100a"), sass("sm_120")]),
    ("", []),
], ids=["121a", "120a", "ptx120", "mix", "family", "ptx-flavours", "arch-shorthand", "bare-cubin", "vllm-C",
        "empty"])
def test_parse_listing(text, expected):
    assert list(listing(text)) == expected


def test_target_labels_name_ptx_as_compute():
    assert [t.label for t in listing(LIST_ARCH_SHORTHAND)] == ["sm_121a", "compute_121", "compute_121a"]


@pytest.mark.parametrize("target, cell, expected", [
    (sass("sm_121a"), "sm_121a", True),
    (sass("sm_121"), "sm_121a", True),
    (sass("sm_120a"), "sm_121a", False),  # the silent-failure class
    (sass("sm_120a"), "sm_120", True),
    (sass("sm_120"), "sm_121a", True),  # plain SASS: later minor of the same major
    (sass("sm_120f"), "sm_121a", True),
    (sass("sm_121"), "sm_120", False),  # never backwards
    (sass("sm_121f"), "sm_120", False),
    (sass("sm_100"), "sm_120", False),  # nor across majors
    (sass("sm_100"), "sm_103", True),
    (sass("sm_90a"), "sm_90", True),
    (sass("sm_90a"), "sm_120", False),
    (sass("sm_90"), "sm_121a", False),
    (ptx("sm_120"), "sm_121a", True),  # compute_120: JIT forward
    (ptx("sm_80"), "sm_121a", True),
    (ptx("sm_90"), "sm_90", True),
    (ptx("sm_121"), "sm_120", False),
    (ptx("sm_120a"), "sm_121a", False),  # ptxas: "cannot be compiled to future architecture"
    (ptx("sm_121a"), "sm_121a", True),
    (ptx("sm_90a"), "sm_120", False),
    (ptx("sm_120f"), "sm_121a", True),  # nvcc accepts arch=compute_120f,code=sm_121
    (ptx("sm_121f"), "sm_120", False),
    (ptx("sm_100f"), "sm_103", True),
    (ptx("sm_100f"), "sm_120", False),  # families do not cross majors
    (sass("sm_121a"), "12.1a", True),  # TORCH_CUDA_ARCH_LIST spelling
    (sass("sm_120a"), "12.1", False),
])
def test_runs_on(target, cell, expected):
    assert runs_on(target, cell) is expected


@pytest.mark.parametrize("name", ["cpu", "sm_x", "121a", "12", ""])
def test_a_cell_that_is_no_gpu_arch_is_an_input_error(name):
    with pytest.raises(InputError, match="not a GPU arch"):
        runs_on(sass("sm_120"), name)


def test_sm_120a_only_fails_on_sm_121a_and_names_what_it_carries():
    audit = judge("vllm/_C.abi3.so", listing(LIST_120A), "sm_121a")
    assert audit.verdict == FAIL
    assert audit.describe() == "vllm/_C.abi3.so carries sm_120a only; no SASS or PTX usable on sm_121a"


def test_sm_121a_passes_with_its_target_as_evidence():
    audit = judge("libk121a.so", listing(LIST_121A), "sm_121a")
    assert (audit.verdict, audit.usable) == (PASS, (sass("sm_121a"),))
    assert audit.detail == "runs on sm_121a: sm_121a SASS"


def test_compute_120_ptx_passes_with_the_jit_note():
    audit = judge("libkptx120.so", listing(LIST_PTX120), "sm_121a")
    assert audit.verdict == PASS
    assert "PTX JIT only: slow first load" in audit.detail and "compute_120" in audit.detail


def test_plain_sm_120_sass_passes_on_sm_121a():
    audit = judge("libkfam.so", listing(LIST_FAMILY), "sm_121a")
    assert audit.verdict == PASS and sass("sm_120") in audit.usable and "PTX" not in audit.detail


def test_mixed_sm_90a_sm_120a_passes_on_sm_90_and_fails_on_sm_121a():
    assert judge("libkmix.so", listing(LIST_MIX), "sm_90").usable == (sass("sm_90a"),)
    assert judge("libkmix.so", listing(LIST_MIX), "sm_121a").detail == \
        "carries sm_90a, sm_120a only; no SASS or PTX usable on sm_121a"


def test_no_device_code_is_skipped():
    audit = judge("vllm/cumem_allocator.abi3.so", (), "sm_121a")
    assert (audit.verdict, audit.detail) == (SKIP, "has no device code")


def test_optional_library_with_nothing_for_this_arch_is_reported_not_failed():
    audit = judge("vllm/vllm_flash_attn/_vllm_fa3_C.abi3.so", (sass("sm_90a"),), "sm_121a", optional=True)
    assert audit.verdict == SKIP and audit.detail.endswith("(optional on this arch)")


def test_parse_dump_reads_kernels_per_image():
    images = ka.parse_dump(DUMP_SPLIT.splitlines())
    assert [(i.target, set(i.kernels)) for i in images] == [
        (sass("sm_121a"), {"_Z2kaPf"}), (sass("sm_120a"), {"_Z2kbPf"})]
    assert ka.parse_dump(DUMP_FAMILY_HEADER.splitlines())[0].target == sass("sm_120f")
    assert ka.parse_dump(DUMP_PTX120.splitlines()) == (ka.KernelImage(ptx("sm_120"), frozenset({"_Z1kPf"})),)


def test_a_library_mixing_sm_121a_and_sm_120a_only_kernels_fails_kernel_by_kernel():
    targets = (sass("sm_121a"), sass("sm_120a"))
    assert judge("libsplit.so", targets, "sm_121a").verdict == PASS  # what a listing alone would say
    assert ka.needs_kernel_scan(targets, "sm_121a")
    audit = judge("libsplit.so", targets, "sm_121a", ka.parse_dump(DUMP_SPLIT.splitlines()))
    assert audit.verdict == FAIL and audit.stranded == ("_Z2kbPf",)
    assert audit.detail == ("carries sm_120a only for 1 of 2 kernels (e.g. _Z2kbPf); "
                            "no SASS or PTX usable on sm_121a")


def test_vllm_0_16_nvfp4_kernels_are_stranded_on_sm_121a_but_not_on_sm_120():
    images = ka.parse_dump(DUMP_VLLM.splitlines())
    stranded = ka.stranded_kernels(images, "sm_121a")
    assert len(stranded) == 2 and all("silu_mul_cvt_fp16_to_fp4" in k for k in stranded)
    assert ka.stranded_kernels(images, "sm_120") == ()
    assert ka.stranded_kernels(images, "sm_90") == ()  # sm_100a/sm_120a kernels are for other generations


def test_ptx_for_the_kernel_rescues_it():
    images = (*ka.parse_dump(DUMP_SPLIT.splitlines()), ka.KernelImage(ptx("sm_80"), frozenset({"_Z2kbPf"})))
    assert ka.stranded_kernels(images, "sm_121a") == ()


@pytest.mark.parametrize("targets, cell, expected", [
    ((sass("sm_121a"), sass("sm_120a")), "sm_121a", True),
    ((sass("sm_120"), sass("sm_120a"), ptx("sm_80")), "sm_121a", True),  # vllm 0.16 _C
    ((sass("sm_120a"),), "sm_121a", False),  # nothing runs: the listing decides
    ((sass("sm_120"), sass("sm_90a")), "sm_121a", False),  # the rest is for other generations
    ((sass("sm_120"), sass("sm_120a")), "sm_120", False),  # everything of the family runs
])
def test_needs_kernel_scan(targets, cell, expected):
    assert ka.needs_kernel_scan(targets, cell) is expected


def report(*libraries) -> KernelAuditReport:
    return KernelAuditReport(cell_arch="sm_121a", root="/tmp/export", libraries=tuple(libraries))


def test_report_fails_on_any_failing_library_and_summarises_in_one_line():
    done = report(judge("a.so", listing(LIST_121A), "sm_121a"), judge("b.so", listing(LIST_120A), "sm_121a"),
                  judge("c.so", (), "sm_121a"))
    assert not done.ok and done.failures == ("b.so carries sm_120a only; no SASS or PTX usable on sm_121a",)
    assert done.summary() == ("kernel audit sm_121a: FAIL (1 pass, 1 fail, 1 skipped): "
                              "b.so carries sm_120a only; no SASS or PTX usable on sm_121a")
    assert "\n" not in done.summary()
    data = json.loads(json.dumps(done.to_dict()))
    assert data["ok"] is False and [lib["verdict"] for lib in data["libraries"]] == ["pass", "fail", "skip"]
    assert data["libraries"][0]["usable"] == ["sm_121a"]


def test_report_passes_when_every_library_with_device_code_passes():
    done = report(judge("a.so", listing(LIST_121A), "sm_121a"), judge("c.so", (), "sm_121a"))
    assert done.ok and done.summary() == "kernel audit sm_121a: PASS (1 pass, 0 fail, 1 skipped)"


@pytest.mark.parametrize("libraries", [(), (judge("c.so", (), "sm_121a"),)], ids=["empty", "host-only"])
def test_no_device_code_at_all_fails(libraries):
    done = report(*libraries)
    assert not done.ok and "no library with device code" in done.failures[0]


def test_only_optional_libraries_fail_as_nothing_runs():
    done = report(judge("fa3.so", (sass("sm_90a"),), "sm_121a", optional=True))
    assert done.failures == ("no library under /tmp/export runs on sm_121a",)


# --- the side-effect helpers, against a stand-in cuobjdump (a shell script) ---

def fake_tool(tmp_path, stdout: str, stderr: str = "", code: int = 0, sleep: float = 0):
    (tmp_path / "out.txt").write_text(stdout)
    (tmp_path / "err.txt").write_text(stderr)
    tool = tmp_path / "cuobjdump"
    tool.write_text(f"#!/bin/sh\nexec sleep {sleep}\n" if sleep else textwrap.dedent(f"""\
        #!/bin/sh
        cat '{tmp_path}/out.txt'
        cat '{tmp_path}/err.txt' >&2
        exit {code}
        """))  # exec: the kill at the timeout reaches the process holding the pipe
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return str(tool)


def test_list_targets_parses_stdout(tmp_path):
    assert kc.list_targets(fake_tool(tmp_path, LIST_MIX), tmp_path / "x.so") == [sass("sm_90a"), sass("sm_120a")]


def test_list_targets_no_device_code(tmp_path):
    tool = fake_tool(tmp_path, "", "cuobjdump info    : File '/x.so' does not contain device code\n", 255)
    assert kc.list_targets(tool, tmp_path / "x.so") == []


def test_list_targets_reports_cuobjdump_errors(tmp_path):
    tool = fake_tool(tmp_path, "", "cuobjdump fatal   : Invalid fatbin header in '/x.so'\n", 1)
    with pytest.raises(StepFailed, match="Invalid fatbin header"):
        kc.list_targets(tool, tmp_path / "x.so")


def test_list_targets_times_out(tmp_path):
    with pytest.raises(StepFailed, match="timed out after 0 s"):
        kc.list_targets(fake_tool(tmp_path, "", sleep=30), tmp_path / "x.so", timeout=0.2)


def test_find_cuobjdump_names_the_wheel_when_missing(monkeypatch):
    monkeypatch.setattr(kc.shutil, "which", lambda name: None)

    def missing(name):
        raise kc.importlib.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(kc.importlib.metadata, "distribution", missing)
    with pytest.raises(StepFailed, match=r"pip install 'llm-image-factory\[audit\]'"):
        kc.find_cuobjdump()


def test_the_audit_extra_installs_the_wheel_find_cuobjdump_reads():
    """`pip install 'llm-image-factory[audit]'` is what the error tells a user; it must bring the wheel."""
    import tomllib
    from pathlib import Path
    project = tomllib.loads((Path(kc.__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert any(req.startswith("nvidia-cuda-cuobjdump") for req in project["optional-dependencies"]["audit"])


def test_find_cuobjdump_uses_the_wheel_binary_when_path_has_none(monkeypatch):
    monkeypatch.setattr(kc.shutil, "which", lambda name: None)
    found = kc.find_cuobjdump()  # the test extra installs the real wheel
    assert found.endswith("/cuobjdump") and "site-packages" in found
