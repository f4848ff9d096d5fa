"""losses/self_teaching.py against hand computations: the full pathway's targets on unlabelled cases in
nnU-Net's region and label formats, the per-case mix, and the diagnostics."""
import math

import pytest
import torch

from dante_nnunet.losses.self_teaching import mixed_target, teacher_target, teaching_statistics

L9, L3 = math.log(9.0), math.log(3.0)    # sigmoid: 0.9, 0.75


def test_region_target_by_hand():
    # 2 regions x 4 voxels; p = sigmoid: region 0: .9 .1 .75 .5; region 1: .9 .9 .1 .9
    logits = torch.tensor([[[L9, -L9, L3, 0.0], [L9, L9, -L9, L9]]])
    t = teacher_target(logits, regions=True, threshold=0.8)
    assert t.shape == (1, 3, 4)
    assert t[0, 0].tolist() == [1, 0, 1, 0]          # p > 0.5 (0.5 itself is not)
    assert t[0, 1].tolist() == [1, 1, 0, 1]
    # sure where every region has max(p, 1 - p) >= 0.8: voxels 0 and 1; 0.75 and 0.5 are not
    assert t[0, 2].tolist() == [0, 0, 1, 1]
    assert teacher_target(logits, True, 1.01)[0, 2].tolist() == [1, 1, 1, 1]   # a warm-up ignores all


def test_label_target_by_hand():
    # 3 classes x 3 voxels; softmax of (ln 8, 0, 0) = (0.8, 0.1, 0.1); (0, 0, 0) = 1/3 each
    L8 = math.log(8.0)
    logits = torch.tensor([[[L8, 0.0, 0.0], [0.0, L8, 0.0], [0.0, 0.0, 0.0]]])
    t = teacher_target(logits, regions=False, threshold=0.7, ignore_label=3)
    assert t.shape == (1, 1, 3) and t[0, 0].tolist() == [0, 1, 3]
    with pytest.raises(ValueError, match="ignore label"):
        teacher_target(logits, regions=False, threshold=0.7)


def test_mixed_target_keeps_real_labels_and_levels():
    real = [torch.zeros(2, 3, 4), torch.zeros(2, 3, 2)]
    real[0][0, 0] = 1.0                          # case 0 labelled: region 0 everywhere at level 0
    teacher = [torch.full((2, 2, 4), L9), torch.full((2, 2, 2), -L9)]
    out = mixed_target(real, teacher, torch.tensor([False, True]), regions=True, threshold=0.8)
    assert isinstance(out, list) and len(out) == 2
    assert torch.equal(out[0][0], real[0][0]) and torch.equal(out[1][0], real[1][0])   # labelled untouched
    assert out[0][1, :2].eq(1).all() and out[0][1, 2].eq(0).all()      # teacher: both regions, all sure
    assert out[1][1, :2].eq(0).all() and out[1][1, 2].eq(0).all()
    with pytest.raises(ValueError, match="levels"):
        mixed_target(real, teacher[:1], torch.tensor([False, True]), True, 0.8)
    single = mixed_target(real[0], teacher[0], torch.tensor([True, True]), True, 0.8)
    assert torch.is_tensor(single) and single[:, :2].eq(1).all()


def test_teaching_statistics_by_hand():
    # regions: teacher p region 0: .9 .1 .75 .5 ; region 1: .9 .9 .1 .9 ; student logits' signs: + - + - / + + + +
    t = torch.tensor([[[L9, -L9, L3, 0.0], [L9, L9, -L9, L9]]])
    s = torch.tensor([[[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, 1.0, 1.0]]])
    st = teaching_statistics(t, s, regions=True, threshold=0.8, num_classes=3)
    assert st["passed"].tolist() == pytest.approx([0.5, 1.0])        # region 0: .9, .1 pass; region 1: all
    assert float(st["passed_all"]) == pytest.approx(0.5)
    # region 0: teacher {0, 2}, student {0, 2}: Dice 1; region 1: teacher {0, 1, 3}, student all: 2*3/7
    assert st["agreement"].tolist() == pytest.approx([1.0, 6 / 7])
    # labels: classes 0..2; teacher argmax 1 (sure), 2 (unsure), 0; student argmax 1, 1, 0
    L8 = math.log(8.0)
    t = torch.tensor([[[0.0, 0.0, L8], [L8, 0.0, 0.0], [0.0, 0.1, 0.0]]])
    s = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    st = teaching_statistics(t, s, regions=False, threshold=0.7, num_classes=3)
    assert st["passed"].tolist() == pytest.approx([1.0, 0.0])        # class 1: its one voxel sure; class 2: not
    assert float(st["passed_all"]) == pytest.approx(2 / 3)
    assert st["agreement"].tolist() == pytest.approx([2 / 3, 0.0])   # class 1: {0} vs {0, 1}; class 2: {1} vs {}
