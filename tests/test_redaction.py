"""Secrets never reach the run manifest, stage reports or error messages: URL passwords, however
odd, secret-looking query parameters, and settings whose names say they are secret."""

import pytest

from conf.quoting import clip, quote
from conf.redaction import is_secret_name, redact_config, redact_text, redact_url, redact_values

URLS = [
    ("rediss://recs:s3cret@redis.internal:6380/0", "rediss://recs:***@redis.internal:6380/0"),
    ("redis://h:1/0", "redis://h:1/0"),
    ("redis://user@h/0", "redis://user@h/0"),
    ("redis://:onlypass@h/0", "redis://:***@h/0"),
    ("redis://u:p@ss/w@rd@host:6379/0", "redis://u:***@host:6379/0"),  # unescaped @ and / in the password
    ("redis://u:pa:ss@host:6379/0", "redis://u:***@host:6379/0"),  # a ':' in the password
    ("redis://u:pa#ss@host/0", "redis://u:***@host/0"),  # '#', which urllib takes for the fragment
    ("redis://u:p@s#s/w:d@host/0", "redis://u:***@host/0"),  # all of them at once
    ("redis://u:pa?ss@host/0", "redis://u:***@host/0"),  # '?', which urllib takes for the query
    ("redis://u:p@ss@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),  # an IPv6 host
    ("unix://:pw@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),  # no host at all
    ("rediss://u:pw@h:1/0?ssl_ca_certs=/etc/ca.pem&password=abc", "rediss://u:***@h:1/0?ssl_ca_certs=/etc/ca.pem&password=***"),
    ("redis://h/0?password=abc", "redis://h/0?password=***"),  # a password in the query only
    ("rediss://u:pw@h/0?contact=ops@example.com", "rediss://u:***@h/0?contact=ops@example.com"),  # '@' in a query value
    ("s3a://bucket/logs/{run_date}/", "s3a://bucket/logs/{run_date}/"),
    ("https://example.com/x?token=t0k&page=2", "https://example.com/x?token=***&page=2"),
    ("https://example.com/x?key=k3y&Signature=s1g&api_key=a&X-Amz-Credential=c", "https://example.com/x?key=***&Signature=***&api_key=***&X-Amz-Credential=***"),
    ("https://example.com/x?secret=s&auth=a&pwd=p&n=1#frag", "https://example.com/x?secret=***&auth=***&pwd=***&n=1#frag"),
    ("https://example.com/x?page=2&sort=key", "https://example.com/x?page=2&sort=key"),
    ("not a url", "not a url"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "shown"), URLS)
def test_url_passwords_and_secret_parameters_are_masked(url, shown):
    assert redact_url(url) == shown


SECRET_NAMES = [
    "spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.access.key", "spark.ssl.keyPassword",
    "spark.hadoop.fs.s3a.session.token", "spark.authenticate.secret", "AWS_SECRET_ACCESS_KEY", "db-passwd",
    "password", "redis.pass", "private_key", "apiKey", "API-KEY", "gcp.credentials", "auth", "fs.azure.account.key.x",
]  # fmt: skip
PLAIN_NAMES = ["spark.sql.shuffle.partitions", "key_prefix", "passes", "gate_passed", "url", "spark.driver.memory", ""]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_setting_names_are_recognised_however_they_are_written(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_ordinary_setting_names_are_not_taken_for_secrets(name):
    assert not is_secret_name(name)


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_a_secret_setting_is_masked_at_any_depth(name):
    config = {"spark": {"conf": {name: "hunter2", "spark.sql.shuffle.partitions": 16}}, "deep": [{"x": {name: 7}}]}
    masked = {"spark": {"conf": {name: "***", "spark.sql.shuffle.partitions": 16}}, "deep": [{"x": {name: "***"}}]}
    assert redact_config(config) == masked


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


@pytest.mark.parametrize(
    ("setting", "secret"),
    [
        ("redis://u:pa ss'w@host/0", "pa ss'w"),  # a whole-URL setting: spaces and quotes in the password
        ("-Djavax.net.ssl.trustStorePassword=chg1t -Xmx1g", "chg1t"),  # a name=value pair inside a setting
        ("s3a://AKIA:s3cr/et@bucket/logs/{run_date}", "s3cr/et"),
    ],
)
def test_secrets_inside_setting_values_are_masked(setting, secret):
    clean = redact_config({"spark": {"conf": {"spark.driver.extraJavaOptions": setting}}, "input": {"path": setting}})
    assert secret not in str(clean)
    assert "***" in clean["input"]["path"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("input not found: s3a://AKIA:p@ss/w@bucket/logs", "input not found: s3a://AKIA:***@bucket/logs"),
        ("could not reach (redis://u:pw@h:1/0).", "could not reach (redis://u:***@h:1/0)."),
        ("token=abc and -Dspark.ssl.keyPassword=p;w rank=8", "token=*** and -Dspark.ssl.keyPassword=*** rank=8"),
        ("no secrets, a = b, x=1", "no secrets, a = b, x=1"),
    ],
)
def test_secrets_inside_free_text_are_masked(text, shown):
    assert redact_text(text) == shown


def test_a_stage_report_keeps_its_figures_and_loses_its_secrets():
    report = {"input": {"path": "s3a://AKIA:s3cr3t@bucket/logs", "rows_read": 3}, "exports": ["s3a://b/date=1"]}
    assert redact_values(report) == {
        "input": {"path": "s3a://AKIA:***@bucket/logs", "rows_read": 3},
        "exports": ["s3a://b/date=1"],
    }


def test_redacting_a_huge_message_stays_quick():
    import time

    started = time.monotonic()
    for text in ("a" * 5_000_000, "@" * 1_000_000, "x=" * 1_000_000, "redis://" + "@a" * 500_000):
        redact_text(text)
    assert time.monotonic() - started < 10, "linear in the text's length, not quadratic"


@pytest.mark.parametrize(
    ("value", "clipped", "quoted"),
    [
        ("avg", "avg", "'avg'"),
        ("line\nbreak", "line\\nbreak", "'line\\nbreak'"),
        ("x" * 200, "x" * 200, repr("x" * 200)),
        ("x" * 10_000_000, "x" * 200 + "... (10000000 characters)", repr("x" * 200) + "... (10000000 characters)"),
    ],
    ids=["short", "line_break", "at_the_limit", "ten_megabytes"],
)
def test_quotes_of_user_data_are_capped_and_say_how_long_they_were(value, clipped, quoted):
    assert clip(value) == clipped
    assert quote(value) == quoted
