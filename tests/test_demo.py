"""shim/entry/demo.py's reading of the container's output (the run itself is install.sh --demo)."""

from __future__ import annotations

from shim.entry import demo

OUT = (
    "=====lxcfs-demo /proc/meminfo=====\nMemTotal:         262144 kB\nMemFree: 1 kB\n"
    "=====lxcfs-demo /proc/cpuinfo=====\nprocessor\t: 0\nmodel name\t: x\n\n"
    "=====lxcfs-demo /proc/stat=====\ncpu  1 2 3\ncpu0 1 2 3\nintr 5\n"
    "=====lxcfs-demo /proc/swaps=====\nFilename Type Size Used Priority\n"
    "=====lxcfs-demo free=====\n   total used\nMem:  262144 924\n"
)


def test_every_file_is_in_the_script():
    script = demo.script()
    for f in demo.FILES:
        assert f"cat {f}" in script
    assert script.endswith("free")


def test_sections_and_key_lines():
    s = demo.split_sections(OUT)
    assert demo.key_line("/proc/meminfo", s["/proc/meminfo"]) == "MemTotal: 262144 kB"
    assert demo.key_line("/proc/cpuinfo", s["/proc/cpuinfo"]) == "processors: 1"
    assert demo.key_line("/proc/stat", s["/proc/stat"]) == "cpu lines: 1 (cpu0)"
    assert demo.key_line("/proc/swaps", s["/proc/swaps"]) == "swap: none (header only)"
    assert demo.key_line(demo.FREE, s[demo.FREE]) == "Mem: total 262144 kB"
    assert demo.key_line("/proc/uptime", "") == "(empty)"


def test_swaps_with_a_device():
    text = "Filename Type Size Used Priority\n/swapfile file 1048572 0 -2\n"
    assert demo.key_line("/proc/swaps", text) == "swap: 1 device(s), 1048572 kB"
