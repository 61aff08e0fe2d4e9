"""The harness itself: the real binary starts on free ports, reports its doors and restarts on
the same data directory after SIGKILL."""

import requests


def test_binary_reports_http_door_and_becomes_ready(ferry_factory):
    ferry = ferry_factory()
    assert ferry.doors["http"].startswith("127.0.0.1:")
    assert requests.get(ferry.http_url + "/healthz", timeout=5).status_code == 200
    assert requests.get(ferry.http_url + "/readyz", timeout=5).status_code == 200


def test_queue_survives_sigkill_through_http(ferry_factory, tmp_path):
    ferry = ferry_factory()
    r = requests.post(ferry.http_url + "/v1/queues", json={"name": "harness"}, timeout=5)
    assert r.status_code in (200, 201), r.text
    r = requests.post(
        ferry.http_url + "/v1/queues/harness/messages", json={"body": "kept"}, timeout=5
    )
    assert r.status_code == 200, r.text
    ferry.kill()
    again = ferry_factory(data_dir=ferry.data_dir)
    r = requests.post(
        again.http_url + "/v1/queues/harness/receive", json={"max": 10}, timeout=10
    )
    assert r.status_code == 200, r.text
    bodies = [m["body"] for m in r.json()["messages"]]
    assert bodies == ["kept"]
