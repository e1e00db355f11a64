"""palisade.Client against a server with security on: tokens from an argument, the
environment or a service account (renewed before expiry), and errors that carry the
server's message and request id."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import palisade
from conftest import OWNER, need

#: Service-account tokens live 2 s here, so the test sees one renewed.
PLATFORM = "issuer:\n  tokenLifetime: 2s\n"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    need("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("home")
    config = home.parent / "platform.yaml"
    config.write_text(PLATFORM)
    X = np.random.default_rng(3).normal(size=(50, 3))
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    palisade.save(model, X[:10], name="scorer", version="1.0.0", home=home,
                  owners=[OWNER, "serviceaccount:default/batch"])
    account = json.loads(palisade._binary.run(
        ["sa", "create", "batch", "--namespace", "default", "--config", str(config), "--output", "json"], home=home))
    with palisade.serve(home=home, config=config) as server:
        yield server, model, X, account


def test_a_token_from_an_argument(secured):
    server, model, X, _ = secured
    answer = palisade.Client(server.url, token=server.token(OWNER)).predict("scorer", X)
    np.testing.assert_array_equal(answer["label"], model.predict(X))


def test_a_token_from_the_environment(secured, monkeypatch):
    server, model, X, _ = secured
    monkeypatch.setenv("PALISADE_TOKEN", server.token(OWNER))
    answer = palisade.Client(server.url).predict("scorer", X[:3])
    np.testing.assert_array_equal(answer["label"], model.predict(X[:3]))


def test_401_carries_the_server_message_and_request_id(secured, monkeypatch):
    server, _, X, _ = secured
    monkeypatch.delenv("PALISADE_TOKEN", raising=False)
    with pytest.raises(palisade.AuthenticationError) as refused:
        palisade.Client(server.url).predict("scorer", X)
    err = refused.value
    assert err.status == 401
    assert "authentication required: send a bearer token" in err.message
    assert "no token was sent" in err.message
    assert err.request_id and len(err.request_id) == 36
    assert err.request_id in str(err)

    with pytest.raises(palisade.AuthenticationError) as refused:
        palisade.Client(server.url, token="not-a-jwt").predict("scorer", X)
    assert "authentication failed" in refused.value.message


def test_403_carries_the_server_message(secured):
    server, _, X, _ = secured
    with pytest.raises(palisade.PermissionDeniedError) as refused:
        server.client("bob@example.com").predict("scorer", X)
    assert refused.value.status == 403
    assert refused.value.message == "RBAC: access denied"
    assert refused.value.request_id


def test_404_for_an_unknown_model(secured):
    server, _, X, _ = secured
    with pytest.raises(palisade.NotFoundError) as refused:
        server.client(OWNER).predict("nothing-here", X)
    assert "nothing-here" in refused.value.message


def test_a_bad_request_says_which_input(secured):
    server, _, _, _ = secured
    with pytest.raises(palisade.ApiError) as refused:
        server.client(OWNER).predict("scorer", {"X": np.zeros((2, 5), dtype=np.float32)})
    assert refused.value.status == 400 and "X" in refused.value.message


def test_the_service_account_token_is_renewed_before_it_expires(secured):
    server, model, X, account = secured
    client = palisade.Client.from_service_account(server.url, account["client_id"], account["client_secret"])
    first = client.predict("scorer", X)
    np.testing.assert_array_equal(first["label"], model.predict(X))
    token = client._token
    assert token.fetched == 1
    client.predict("scorer", X[:2])
    assert token.fetched == 1, "a fresh token is reused"
    time.sleep(1.8)  # past four fifths of its 2 s lifetime
    again = client.predict("scorer", X)
    assert token.fetched == 2, "the token was renewed before it expired"
    np.testing.assert_array_equal(again["label"], model.predict(X))


def test_a_wrong_service_account_secret_is_an_authentication_error(secured):
    server, _, X, account = secured
    client = palisade.Client.from_service_account(server.url, account["client_id"], "wrong")
    with pytest.raises(palisade.AuthenticationError) as refused:
        client.predict("scorer", X)
    assert "invalid_client" in refused.value.message


def test_explain_without_an_explainer_says_how_to_add_one(secured):
    server, _, X, _ = secured
    with pytest.raises(palisade.ExplanationsUnavailableError) as refused:
        server.client(OWNER).explain("scorer", X)
    assert isinstance(refused.value, NotImplementedError)
    assert "has no explainer" in str(refused.value) and "explainer:" in str(refused.value)


def test_explain_answers_shap_values_that_add_up_to_the_prediction(tmp_path):
    """A model built with `explainer: KernelShap`: the SDK's explain gives one array per
    class, rows x features, and expected value + SHAP values = the predicted probability."""
    need("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    home = tmp_path / "home"
    X = np.random.default_rng(7).normal(size=(60, 3))
    model = LogisticRegression().fit(X, (X[:, 0] + X[:, 2] > 0).astype(int))
    palisade.save(model, X[:5], name="scored", version="1.0.0", home=home, owners=[OWNER],
                  path=tmp_path / "bundle", background=X[:8],
                  explainer={"type": "KernelShap", "background": "background.npy"})
    with palisade.serve(home=home) as server:
        client = server.client(OWNER)
        explanation = client.explain("scored", X[10:14])
        shap_values = explanation["data"]["shap_values"]
        expected = explanation["data"]["expected_value"]
        proba = client.predict("scored", X[10:14])
    assert len(shap_values) == 2 and all(v.shape == (4, 3) for v in shap_values)
    probabilities = next(v for k, v in proba.items() if v.ndim == 2)
    for c in range(2):
        np.testing.assert_allclose(expected[c] + shap_values[c].sum(axis=1), probabilities[:, c], atol=1e-5)
    np.testing.assert_allclose(probabilities, model.predict_proba(X[10:14]), atol=1e-5)


def test_metadata_and_models(secured):
    server, _, _, _ = secured
    client = server.client(OWNER)
    info = client.metadata("scorer")
    assert info.versions == ("1.0.0",)
    assert [s.name for s in info.inputs] == ["X"] and info.inputs[0].datatype == "FP32"
    assert [m.name for m in client.models()] == ["scorer"]
    # Models the caller may not call are listed without their signature.
    (hidden,) = server.client("bob@example.com").models()
    assert hidden.name == "scorer" and hidden.inputs == ()


def test_serve_starts_when_audit_records_are_shipped_on_stdout(tmp_path):
    """With audit.ship.stdout the server's own lines go to stderr: palisade.serve finds the
    address there, the server answers, and its log (stderr) holds the startup lines."""
    need("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    home = tmp_path / "home"
    config = tmp_path / "platform.yaml"
    config.write_text("audit:\n  ship:\n    stdout: true\n")
    X = np.random.default_rng(5).normal(size=(40, 2))
    model = LogisticRegression().fit(X, (X[:, 1] > 0).astype(int))
    palisade.save(model, X[:5], name="shipped", version="1.0.0", home=home, owners=[OWNER])
    with palisade.serve(home=home, config=config) as server:
        for _ in range(3):
            answer = server.client(OWNER).predict("shipped", X[:4])
            np.testing.assert_array_equal(answer["label"], model.predict(X[:4]))
        assert "palisade: listening on" in server.log_path.read_text()
    assert not server.running


def test_drift_reports_the_inputs_against_the_reference(tmp_path):
    """A model saved with reference rows and `monitoring: {drift: ...}`: the SDK's drift()
    reads the report; inputs shifted far from the reference drift, and a model without
    drift monitoring says how to add it."""
    need("skl2onnx")
    from sklearn.linear_model import LogisticRegression

    home = tmp_path / "home"
    rng = np.random.default_rng(11)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
    palisade.save(model, X[:5], name="watched", version="1.0.0", home=home, owners=[OWNER],
                  path=tmp_path / "bundle", reference=X,
                  monitoring={"drift": {"reference": "reference.npy", "window": 40}})
    palisade.save(model, X[:5], name="unwatched", version="1.0.0", home=home, owners=[OWNER])
    with palisade.serve(home=home) as server:
        client = server.client(OWNER)
        client.predict("watched", X[:40])
        calm = client.drift("watched")
        client.predict("watched", X[:40] + 5.0)
        shifted = client.drift("watched")
        with pytest.raises(palisade.DriftUnavailableError) as refused:
            client.drift("unwatched")
    assert calm["window_rows"] == 40 and calm["drift"] is False, calm
    assert shifted["drift"] is True, shifted
    assert len(shifted["features"]) == 3
    assert all(f["corrected_p_value"] < 0.05 for f in shifted["features"]), shifted
    assert isinstance(refused.value, NotImplementedError) and "monitoring:" in str(refused.value)


def test_outliers_score_each_row_against_the_reference(tmp_path):
    """`monitoring: {outliers: mahalanobis}`: the SDK's outliers() gives one score per row,
    equal to scipy's Mahalanobis distance against the reference's mean and covariance, and
    flags the row far from the reference."""
    need("skl2onnx")
    need("scipy")
    from scipy.spatial.distance import mahalanobis
    from sklearn.linear_model import LogisticRegression

    home = tmp_path / "home"
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 3))
    model = LogisticRegression().fit(X, (X[:, 1] > 0).astype(int))
    palisade.save(model, X[:5], name="scored-rows", version="1.0.0", home=home, owners=[OWNER],
                  path=tmp_path / "bundle", reference=X,
                  monitoring={"outliers": {"method": "mahalanobis", "reference": "reference.npy"}})
    palisade.save(model, X[:5], name="plain-rows", version="1.0.0", home=home, owners=[OWNER])
    rows = np.vstack([X[:3], [[9.0, -9.0, 9.0]]])
    with palisade.serve(home=home) as server:
        client = server.client(OWNER)
        scored = client.outliers("scored-rows", rows)
        with pytest.raises(palisade.OutliersUnavailableError):
            client.outliers("plain-rows", rows)
    reference = np.load(tmp_path / "bundle" / "reference.npy").astype(np.float64)
    inverse = np.linalg.pinv(np.cov(reference, rowvar=False))
    expected = [mahalanobis(r, reference.mean(axis=0), inverse) for r in rows.astype(np.float32).astype(np.float64)]
    np.testing.assert_allclose(scored.scores, expected, rtol=1e-4)
    assert scored.is_outlier.tolist() == [False, False, False, True]
    assert any(v.shape[0] == 4 for v in scored.outputs.values())
