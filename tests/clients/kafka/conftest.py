"""Fixtures for the Kafka door suites: a running ferry with the kafka door, and client helpers."""

import uuid

import pytest


@pytest.fixture
def kafka(ferry_factory):
    """A started ferry (http + kafka doors); `.bootstrap` is the Kafka bootstrap address."""
    f = ferry_factory(doors=("http", "kafka"))
    f.bootstrap = f.doors["kafka"]
    return f


@pytest.fixture
def topic_name():
    return "t-" + uuid.uuid4().hex[:10]
