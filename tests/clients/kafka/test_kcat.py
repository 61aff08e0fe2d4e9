"""kcat (librdkafka's CLI): produce, consume and -L metadata."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (make kcat)")


def kcat(*args, input=None):
    return subprocess.run(
        ["kcat", *args], input=input, capture_output=True, text=True, timeout=60, check=True
    ).stdout


def test_kcat_produce_consume_and_metadata(kafka, topic_name):
    lines = "".join(f"key{i}:value{i}\n" for i in range(20))
    kcat("-P", "-b", kafka.bootstrap, "-t", topic_name, "-K:", input=lines)
    out = kcat("-C", "-b", kafka.bootstrap, "-t", topic_name, "-e", "-f", "%k=%s@%o\n")
    got = out.strip().splitlines()
    assert got == [f"key{i}=value{i}@{i}" for i in range(20)]
    meta = kcat("-L", "-b", kafka.bootstrap, "-t", topic_name)
    assert f'topic "{topic_name}" with 1 partitions' in meta
    assert f"broker 0 at {kafka.bootstrap}" in meta
    # JSON metadata too.
    import json

    j = json.loads(kcat("-L", "-J", "-b", kafka.bootstrap))
    assert topic_name in {t["topic"] for t in j["topics"]}
    # Consume from an offset.
    out = kcat("-C", "-b", kafka.bootstrap, "-t", topic_name, "-o", "15", "-e", "-f", "%s\n")
    assert out.split() == [f"value{i}" for i in range(15, 20)]
