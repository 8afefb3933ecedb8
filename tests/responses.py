"""Checking recommendations responses: every one carries a fresh rec_id naming its run and variant."""

from store.experiments import RecId


def without_rec_id(body: dict) -> dict:
    """The body without its rec_id, after checking that the rec_id names the body's run,
    experiment, variant and whether it was forced."""
    body = dict(body)
    rec = RecId.parse(body.pop("rec_id"))
    assert (rec.run_id, rec.experiment, rec.variant, rec.forced) == (
        body["run_id"], body["experiment"], body["variant"], body["forced"]
    )  # fmt: skip
    return body


NO_EXPERIMENT = {"experiment": None, "variant": "default", "forced": False}
