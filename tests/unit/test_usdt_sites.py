"""USDT argument constants cut to their declared size; attachments of uprobes/USDT probes
ordered so that blocks on one event run in declaration order (no kernel)."""
from __future__ import annotations

import pytest

from ptrace_lang import spec as S
from ptrace_lang.codegen.lower_args import usdt_const
from ptrace_lang.driver import _attach_order
from ptrace_lang.usdtargs import parse_usdt_arg


@pytest.mark.parametrize("text,value", [("1@$300", 44), ("-1@$255", -1), ("-4@$-1", -1),
                                        ("4@$-1", 0xFFFFFFFF), ("8@$-5", -5),
                                        ("-2@$40000", -25536), ("-4@$7", 7)])
def test_constant_arguments_cut_to_their_size(text, value):
    assert usdt_const(parse_usdt_arg(text)) == value


def test_uprobe_and_usdt_attachments_reversed_in_place():
    def att(provider, program):
        return S.AttachSpec(provider, program, "t", 0, provider, None)
    obj = S.ObjectSpec()
    obj.attachments = [att("begin", "b"), att("uprobe", "p1"), att("tracepoint", "t"),
                       att("usdt", "p2"), att("uretprobe", "p3")]
    _attach_order(obj)
    assert [a.program for a in obj.attachments] == ["b", "p3", "t", "p2", "p1"]
