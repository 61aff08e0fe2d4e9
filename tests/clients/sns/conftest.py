"""Fixtures for the SNS suites: a running Ferry with its AWS door, boto3 SNS and SQS clients."""

import pytest

from snslib import make_client


@pytest.fixture
def ferry(ferry_factory):
    return ferry_factory(doors=("http", "aws"))


@pytest.fixture
def sns(ferry):
    return make_client(ferry, "sns")


@pytest.fixture
def sqs(ferry):
    return make_client(ferry, "sqs")
