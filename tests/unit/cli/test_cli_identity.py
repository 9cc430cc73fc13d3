"""The operator's kopf identity needs no /etc/passwd entry (a container's uid has none)."""

from __future__ import annotations

import getpass
import os
import pwd

import pytest

from llm_operator.cli.main import operator_identity


def test_identity_without_a_passwd_entry(monkeypatch):
    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(KeyError):
        getpass.getuser()  # what kopf's default identity calls, as in the chart's pod (uid 65532)
    assert operator_identity() == f"llm-operator@{os.uname().nodename}/{os.getpid()}"
