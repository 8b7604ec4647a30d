"""Coverage-guided fuzzing (atheris) of parse_review and both deciders, run by test_atheris.py.

Usage: python -m tests.hardening.webhook.atheris_review -runs=N -seed=S
Any exception other than ReviewError (or a malformed decision) is a crash.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from sidecred.pods import pod, policy, roles  # noqa: F401
    from sidecred.pods.settings import Settings
    from sidecred.webhook import decide, mutate, review, validate  # noqa: F401

CONFIG = Settings(base_role_arn="arn:aws:iam::111122223333:role/")
NAMESPACE = {
    "metadata": {
        "name": "shop",
        "annotations": {"iam.amazonaws.com/permitted": "arn:aws:iam::111122223333:role/shop-.*"},
    }
}
SEED = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",'
    b'"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1",'
    b'"resource":"pods"},"operation":"CREATE","namespace":"shop","object":{"metadata":'
    b'{"annotations":{"iam.amazonaws.com/role":"shop-reader"}},"spec":{"containers":'
    b'[{"name":"app","env":[{"name":"AWS_REGION","value":"x"}]}]}}}}'
)


def one_input(data: bytes) -> None:
    for body in (data, SEED[: len(data) % len(SEED)] + data):
        try:
            request = review.parse_review(body)
        except review.ReviewError as exc:
            assert 400 <= exc.status_code < 500
            continue
        for decision in (
            decide.decide_mutation(request, NAMESPACE, CONFIG, new_token=lambda: "t"),
            decide.decide_validation(request, NAMESPACE, CONFIG),
        ):
            assert decision.allowed or decision.message.startswith("sidecred: ")
            review.build_review(request["uid"], decision)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
