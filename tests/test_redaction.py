"""Secrets never reach the run manifest or error messages: URL passwords, however odd, and
settings whose names say they are secret."""

import pytest

from conf.redaction import redact_config, redact_url

URLS = [
    ("rediss://recs:s3cret@redis.internal:6380/0", "rediss://recs:***@redis.internal:6380/0"),
    ("redis://h:1/0", "redis://h:1/0"),
    ("redis://user@h/0", "redis://user@h/0"),
    ("redis://:onlypass@h/0", "redis://:***@h/0"),
    ("redis://u:p@ss/w@rd@host:6379/0", "redis://u:***@host:6379/0"),  # unescaped @ and / in the password
    ("rediss://u:pw@h:1/0?ssl_ca_certs=/etc/ca.pem&password=abc", "rediss://u:***@h:1/0?ssl_ca_certs=/etc/ca.pem&password=***"),
    ("s3a://bucket/logs/{run_date}/", "s3a://bucket/logs/{run_date}/"),
    ("https://example.com/x?token=t0k&page=2", "https://example.com/x?token=***&page=2"),
    ("not a url", "not a url"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "shown"), URLS)
def test_url_passwords_and_secret_parameters_are_masked(url, shown):
    assert redact_url(url) == shown


def test_secret_looking_settings_are_masked_wherever_they_are():
    config = {
        "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": "AKIA-SECRET", "spark.hadoop.fs.s3a.access.key": "AKIA",
                           "spark.ssl.keyPassword": "pw", "spark.sql.shuffle.partitions": 16}},
        "store": {"url": "redis://recs:pw@cache:6379/0", "key_prefix": "recs"},
        "api": {"fallback_file": "var/api/fallback.json", "api_key": None},
    }  # fmt: skip
    clean = redact_config(config)
    assert clean["spark"]["conf"] == {"spark.hadoop.fs.s3a.secret.key": "***", "spark.hadoop.fs.s3a.access.key": "***",
                                      "spark.ssl.keyPassword": "***", "spark.sql.shuffle.partitions": 16}  # fmt: skip
    assert clean["store"] == {"url": "redis://recs:***@cache:6379/0", "key_prefix": "recs"}
    assert clean["api"] == config["api"], "nothing secret there (an empty secret stays empty)"
    assert config["store"]["url"] == "redis://recs:pw@cache:6379/0", "the input is not changed"
