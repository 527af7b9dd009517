"""Parameter and MAC counts against paper Table 3, counted by torch's FlopCounterMode."""

import pytest
import torch
from torch import nn

from levit_bench.models.counting import count_macs, count_parameters
from levit_bench.registry import get_spec

# Table 3 (params in M, both heads, unfused; MACs in M at 224x224), and the exact parameter
# counts of the public implementations (timm's model table, in M, two decimals).
TABLE_3 = {
    "levit_128s": (7.8, 7.78, 305),
    "levit_128": (9.2, 9.21, 406),
    "levit_192": (10.9, 10.95, 658),
    "levit_256": (18.9, 18.89, 1120),
    "levit_384": (39.1, 39.13, 2353),
}


@pytest.mark.parametrize("name", sorted(TABLE_3))
def test_counts_match_table_3(name):
    paper_params, public_params, paper_macs = TABLE_3[name]
    params, macs = get_spec(name).measured_counts()
    assert round(params / 1e6, 1) == paper_params
    assert abs(params / 1e6 - public_params) / public_params < 1e-3
    assert abs(macs / 1e6 - paper_macs) / paper_macs < 0.015


def test_registry_reports_table_3():
    for name, (paper_params, _, paper_macs) in TABLE_3.items():
        reported = get_spec(name).reported
        assert (reported.params_m, reported.macs_m) == (paper_params, paper_macs)
        assert "Table 3" in reported.source


def test_macs_count_convolutions_linears_and_attention_products_only():
    """A hand-checkable net: BN, activations, softmax and the bias add are not counted."""

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4, 6)

        def forward(self, x):
            t = self.bn(self.conv(x)).flatten(2).transpose(1, 2)  # (B, 64, 4)
            a = torch.softmax(t @ t.transpose(1, 2) + 1.0, dim=-1)  # 64*64*4 MACs
            return torch.nn.functional.hardswish(self.fc(a @ t))  # 64*64*4 + 64*4*6 MACs

    tiny = Tiny()
    conv = 4 * 3 * 9 * 8 * 8
    assert count_macs(tiny, 16) == conv + 2 * 64 * 64 * 4 + 64 * 4 * 6
    assert count_parameters(tiny) == 4 * 3 * 9 + 2 * 4 + 4 * 6 + 6
    assert tiny.training  # counting does not leave the model in eval mode
