"""palisade.save round trip for a small PyTorch MLP (torch.onnx.export's dynamo exporter,
a dynamic batch), served and called through Client.

PyTorch from PyPI brings about 4 GB of CUDA libraries, so scripts/test-python.sh runs this
file in its own step with its own virtualenv (see docs/python.md, "Tests")."""

from __future__ import annotations

import numpy as np

import palisade
from conftest import OWNER, need


def test_torch_mlp_round_trip(tmp_path):
    torch = need("torch")
    need("onnxscript")
    torch.manual_seed(0)

    class Mlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))

        def forward(self, x):
            return torch.softmax(self.net(x), dim=-1)

    model = Mlp()
    X = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    home = tmp_path / "home"
    ref = palisade.save(model, X[:8], name="mlp", version="1", owners=[OWNER], home=home,
                        classes=["low", "mid", "high"])
    assert [s.name for s in ref.inputs] == ["x"]
    assert ref.inputs[0].shape == (-1, 5)
    (output,) = ref.outputs
    assert output.labels == ("low", "mid", "high")
    assert model.training, "save puts the module back in the mode it found it in"
    with palisade.serve(home=home) as server:
        client = server.client(OWNER)
        one = client.predict("mlp", X[:1])  # a batch of one: the batch axis is dynamic
        many = client.predict("mlp", X)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(many["output"], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(one["output"], expected[:1], rtol=0, atol=1e-5)
