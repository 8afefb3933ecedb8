"""An experiment's results, computed from the counters in Redis, so every API worker and the
nightly job give the same answer and nothing is lost on a restart.

    experiment_report(client, keys, "ranking") -> dict | None

Per variant: users assigned (served the variant; a HyperLogLog estimate, within about 1%) and
exposed (with a counted impression; exact, as the sample-ratio check needs),
impressions, clicks and conversions; click-through and conversion rates per impression with
95% Wilson intervals; each variant against the control by a two-proportion test (the
chi-square test of the 2x2 table without continuity correction, whose p-value is the two-sided
z-test's); and a sample-ratio-mismatch check: a chi-square goodness-of-fit test of the exposed
users against the shares. The distributions come from scipy.
"""

from __future__ import annotations

import json

from store.contract import EVENT_TYPES, KeyLayout, salt_generation

CONFIDENCE = 0.95
# A sample-ratio p-value below this flags a mismatch: assignment or logging is broken.
SRM_ALPHA = 0.001
RATES = {"ctr": "clicks", "conversion_rate": "conversions"}


def experiment_report(client, keys: KeyLayout, name: str) -> dict | None:
    """The experiment's statistics, or None when it was never published."""
    raw = client.get(keys.experiment_definition(name))
    if raw is None:
        return None
    definition = json.loads(raw)
    variants, salt = list(definition["shares"]), definition["salt"]
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.experiment_data(name, salt, "counts"))
    for variant in variants:
        pipe.scard(keys.experiment_data(name, salt, "exposed", variant))
    counts_raw, *exposed = pipe.execute()
    # PFCOUNT outside the pipeline, one key per call: it can take several keys, so redis-py's
    # cluster pipeline refuses it even with one.
    assigned = [client.pfcount(keys.experiment_data(name, salt, "assigned", variant)) for variant in variants]
    counts = {_text(field): int(value) for field, value in counts_raw.items()}
    rows = {
        variant: {
            "variant": variant,
            "share": definition["shares"][variant],
            "assigned_users": assigned[index],
            "exposed_users": exposed[index],
            **{f"{kind}s": counts.get(f"{variant}:{kind}", 0) for kind in EVENT_TYPES},
        }
        for index, variant in enumerate(variants)
    }
    return summarize(name, definition, rows)


def summarize(name: str, definition: dict, rows: dict[str, dict]) -> dict:
    """Rates, intervals, tests against the control and the sample-ratio check for counted rows."""
    control = rows[definition["control"]]
    for row in rows.values():
        for rate, numerator in RATES.items():
            row[rate] = proportion(row[numerator], row["impressions"])
        if row is not control:
            row["vs_control"] = {
                rate: compare(row[numerator], row["impressions"], control[numerator], control["impressions"])
                for rate, numerator in RATES.items()
            }
    return {
        "experiment": name,
        "generation": salt_generation(definition["salt"]),
        "control": definition["control"],
        "confidence": CONFIDENCE,
        "variants": list(rows.values()),
        "sample_ratio": sample_ratio([row["exposed_users"] for row in rows.values()],
                                     [row["share"] for row in rows.values()]),
    }  # fmt: skip


def proportion(successes: int, trials: int) -> dict:
    """A rate with its Wilson interval; nulls when it is undefined (no trials, or more
    successes than trials, as when clicks arrive without their impressions)."""
    from scipy.stats import binomtest

    if trials == 0 or successes > trials:
        return {"rate": None, "ci_low": None, "ci_high": None}
    interval = binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return {"rate": successes / trials, "ci_low": float(interval.low), "ci_high": float(interval.high)}


def compare(successes: int, trials: int, control_successes: int, control_trials: int) -> dict:
    """A variant's rate against the control's: absolute and relative lift, two-sided p-value."""
    from scipy.stats import chi2_contingency

    if min(trials, control_trials) == 0 or successes > trials or control_successes > control_trials:
        return {"lift": None, "relative_lift": None, "p_value": None}
    rate, control_rate = successes / trials, control_successes / control_trials
    table = [[successes, trials - successes], [control_successes, control_trials - control_successes]]
    if successes + control_successes in (0, trials + control_trials):
        p_value = 1.0  # both rates are 0 (or 1): no evidence of a difference
    else:
        p_value = float(chi2_contingency(table, correction=False).pvalue)
    return {
        "lift": rate - control_rate,
        "relative_lift": (rate - control_rate) / control_rate if control_rate else None,
        "p_value": p_value,
    }


def sample_ratio(observed: list[int], shares: list[float]) -> dict:
    """Chi-square goodness of fit of the exposed users against the configured shares."""
    from scipy.stats import chisquare

    total = sum(observed)
    if total == 0:
        return {"exposed_users": 0, "chi_square": None, "p_value": None, "mismatch": False}
    expected = [total * share for share in shares]
    result = chisquare(observed, f_exp=expected)
    p_value = float(result.pvalue)
    return {
        "exposed_users": total,
        "chi_square": float(result.statistic),
        "p_value": p_value,
        "mismatch": p_value < SRM_ALPHA,
    }


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
