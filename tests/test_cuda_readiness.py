"""What nnU-Net does on CUDA, checked on the CPU: ``torch.compile`` of the networks it compiles (the
training network, the validation views, the deployed network) and of the whole training step, and
mixed precision (autocast) of Stage 2 in every regulariser form and of Stage 1. The trainers are the
real classes on the 3-stage plans of ``dante_nnunet.jobs.inmemory``; DDP is in test_distributed.py, checkpoints
written on a GPU in the end-to-end modules. Measurements on a GPU: docs/performance.md."""
import math
import os

import pytest
import torch
import torch._dynamo as dynamo

from dante_nnunet.jobs import inmemory as pf
from dante_nnunet.losses.alignment import ALIGNMENTS
from dante_nnunet.networks.masking import apply_mask
from dante_nnunet.networks.builder import build_stock_network
from dante_nnunet.networks.dual_pathway import FullPathway, LimitedPathway
from dante_nnunet.training import DANTEPretrainTrainer, DANTETrainer

pytestmark = pytest.mark.slow   # torch.compile and autocast steps: minutes on 2 cores

DATASET = "Dataset996_Cuda"


def _stage2(seeded_anchors: bool = True, features=(4, 8, 16), **attrs):
    """An initialised DANTETrainer with its regularisers on; ``attrs`` override its class attributes.
    ``seeded_anchors``: InfoNCE draws its anchors from a generator reseeded for every compared step (the
    trainer itself draws them from torch's global stream)."""
    t = pf.initialisable_trainer(type("DANTETrainer_cudaCheck", (DANTETrainer,), attrs), DATASET, features)
    t.initialize()
    t.loss.lambda_pib, t.loss.lambda_align = t.lambda_pib, t.lambda_align
    if seeded_anchors and hasattr(t.loss.alignment, "generator"):
        t.loss.alignment.generator = torch.Generator().manual_seed(0)
    return t


def _stage1(features=(4, 8, 16)):
    t = pf.initialisable_trainer(DANTEPretrainTrainer, DATASET, features)
    t.initialize()
    return t


def _reseed(t):
    if getattr(t.loss, "alignment", None) is not None and getattr(t.loss.alignment, "generator", None) is not None:
        t.loss.alignment.generator.manual_seed(0)


def _step(t, network, batch):
    """Loss and gradients of one training step of trainer ``t`` through ``network`` (``t.network``
    or a compiled copy sharing its parameters)."""
    t.network.zero_grad(set_to_none=True)
    _reseed(t)
    if isinstance(t, DANTEPretrainTrainer):
        x = batch["data"]
        mask = t.val_masker(x.shape[0], x.shape[2:])
        loss = t.loss(network(apply_mask(x, mask)), x, mask)
    else:
        loss = t.loss(network(batch["data"]), batch["target"])
    loss.backward()
    # (nnU-Net weighs the lowest-resolution deep-supervision output 0: its head gets no gradient)
    return loss.detach(), torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                                     for p in t.network.parameters()])


def _masks_fixed(t):
    """Stage 1: the next mask drawn is the same in every compared run."""
    if isinstance(t, DANTEPretrainTrainer):
        t.val_masker.reseed(0)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("stage,backend", [("stage2", "inductor"), ("stage1", "aot_eager")])
def test_compiled_training_network_matches_eager(stage, backend):
    """nnU-Net compiles the training network and keeps the loss eager. Inductor's code generation (40 s
    per network on 2 CPU cores) is checked on Stage 2's network, which holds every operator of Stage 1's;
    Stage 1's goes through the same graph capture and AOTAutograd (forward and backward graphs)."""
    t = _stage2() if stage == "stage2" else _stage1()
    batch = pf.region_batch()
    _masks_fixed(t)
    loss, grads = _step(t, t.network, batch)
    _masks_fixed(t)
    dynamo.reset()
    compiled = torch.compile(t.network, backend=backend)
    c_loss, c_grads = _step(t, compiled, batch)
    assert torch.isfinite(c_loss) and abs(float(c_loss - loss)) <= 1e-5 * abs(float(loss))
    assert _rel(c_grads, grads) < 1e-4


def _graph_breaks(fn, *args) -> list:
    """Where dynamo breaks the graph of ``fn(*args)``: (file, line) of each break's innermost frame,
    except the breaks in nnU-Net's own DeepSupervisionWrapper, which nnU-Net does not compile (it
    compiles the network and, on CUDA, the Dice term; its wrapper skips zero weights with a
    data-dependent ``if``)."""
    dynamo.reset()
    breaks = [(f.filename, f.lineno) for f in (r.user_stack[-1] for r in dynamo.explain(fn)(*args).break_reasons)]
    return [b for b in breaks if not b[0].endswith(os.path.join("nnunetv2", "training", "loss", "deep_supervision.py"))]


@pytest.mark.parametrize("alignment,stop_gradient,pib", [(a, True, "relative") for a in ALIGNMENTS]
                         + [("l1", False, "l1"), ("std_l1", True, "vib")])   # each alignment in the default
def test_whole_stage2_step_traces_without_graph_breaks(alignment, stop_gradient, pib):   # form; the paper's; VIB
    """Network and DANTELoss traced together: nothing of the plugin (the output NamedTuple, InfoNCE's
    anchor sampling, the standardisation, the PIB, the variational code's sampling) breaks the graph."""
    attrs = dict(bottleneck="vib") if pib == "vib" else dict(pib=pib)
    t = _stage2(seeded_anchors=False, alignment=alignment, alignment_stop_gradient=stop_gradient, **attrs)
    batch = pf.region_batch()
    assert _graph_breaks(lambda x, y: t.loss(t.network(x), y), batch["data"], batch["target"]) == []


def test_stage1_network_and_loss_trace_without_graph_breaks():
    """The masks are drawn outside the network, on the host (a seeded CPU generator, one small grid per
    case); the masked network and Eqs. 7-9 form one graph."""
    t = _stage1()
    x = pf.region_batch()["data"]
    mask = t.masker(x.shape[0], x.shape[2:])
    assert _graph_breaks(lambda x, m: t.loss(t.network(apply_mask(x, m)), x, m), x, mask) == []


def test_activation_checkpointing_and_inference_networks_trace_without_graph_breaks():
    t = _stage2(activation_checkpointing=True)
    batch = pf.region_batch()
    assert _graph_breaks(lambda x, y: t.loss(t.network(x), y), batch["data"], batch["target"]) == []
    dual = t.dual_network()
    dual.set_deep_supervision(False)
    dual.eval()
    deployed = build_stock_network(t.configuration_manager, 3, 3, False).eval()
    with torch.no_grad():
        for view in (LimitedPathway(dual), FullPathway(dual)):
            assert _graph_breaks(view, batch["data"]) == []
        assert _graph_breaks(deployed, batch["data"][:, [0, 2, 3]]) == []


def test_compiled_validation_view_matches_eager():
    t = _stage2()
    dual = t.dual_network()
    dual.set_deep_supervision(False)
    dual.eval()
    x = pf.region_batch()["data"]
    view = LimitedPathway(dual)
    dynamo.reset()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(view)(x), view(x), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ mixed precision
# bfloat16 keeps float32's range with an 8-bit mantissa; float16 (nnU-Net's CUDA autocast) the reverse.
# Widths 16..64: at 4 channels InfoNCE's gradient at initialisation is so poorly conditioned that
# bfloat16 rounding turns it (gradient cosine with fp32 0.63-0.82 over 4 draws; 0.997-0.998 at 16..64,
# fp16 >= 0.997 at both).
TOLERANCE = {torch.bfloat16: (2e-2, 0.98), torch.float16: (5e-3, 0.99)}   # term rel. error, gradient cosine
WIDE = (16, 32, 64)


def _assert_autocast_step_close(t, dtype):
    """One step in fp32 and one under autocast(dtype) from the same weights, batch and masks/anchors."""
    batch = pf.region_batch()
    _masks_fixed(t)
    loss, grads = _step(t, t.network, batch)
    terms = {k: float(v) for k, v in t.loss.last_terms.items()}
    _masks_fixed(t)
    with torch.autocast("cpu", dtype=dtype):
        a_loss, a_grads = _step(t, t.network, batch)
    a_terms = {k: float(v) for k, v in t.loss.last_terms.items()}
    rel, cosine = TOLERANCE[dtype]
    assert torch.isfinite(a_loss) and torch.isfinite(a_grads).all()
    # a term the form does not compute is logged NaN (losses/dante_loss.py) in both precisions
    assert {k for k, v in terms.items() if math.isnan(v)} == {k for k, v in a_terms.items() if math.isnan(v)}
    assert all(abs(a_terms[k] - terms[k]) <= rel * abs(terms[k]) for k in terms if not math.isnan(terms[k])), \
        (terms, a_terms)
    assert float(torch.nn.functional.cosine_similarity(a_grads, grads, dim=0)) > cosine


@pytest.mark.parametrize("alignment,dtype", [(a, torch.bfloat16) for a in ALIGNMENTS] + [("std_l1", torch.float16)],
                         ids=[f"{a}-bf16" for a in ALIGNMENTS] + ["std_l1-fp16"])
def test_stage2_autocast_step_is_finite_and_close_to_fp32(alignment, dtype):
    _assert_autocast_step_close(_stage2(features=WIDE, alignment=alignment, alignment_stop_gradient=False,
                                        pib="l1" if alignment == "l1" else "relative", lambda_synthesis=1.0), dtype)


@pytest.mark.parametrize("form,dtype", [(f, d) for f in ("vib", "club") for d in (torch.bfloat16, torch.float16)],
                         ids=["vib-bf16", "vib-fp16", "club-bf16", "club-fp16"])
def test_vib_and_club_autocast_step_is_finite_and_close_to_fp32(form, dtype):
    """The variational fusion and the CLUB term under autocast: the code's noise and CLUB's voxel draws come
    from the same reseeded stream; scales, KL, standardisation and CLUB are float32."""
    torch.manual_seed(0)
    t = _stage2(features=WIDE, **(dict(bottleneck="vib") if form == "vib" else dict(lambda_club=0.1)))
    t.loss.lambda_club = t.lambda_club
    batch = pf.region_batch()
    torch.manual_seed(1)
    loss, grads = _step(t, t.network, batch)
    terms = {k: float(v) for k, v in t.loss.last_terms.items()}
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=dtype):
        a_loss, a_grads = _step(t, t.network, batch)
    a_terms = {k: float(v) for k, v in t.loss.last_terms.items()}
    rel, cosine = TOLERANCE[dtype]
    assert torch.isfinite(a_loss) and torch.isfinite(a_grads).all() and terms["pib" if form == "vib" else "club"] != 0
    off = [(k, terms[k], a_terms[k]) for k in terms   # (NaN: a term this trainer does not have)
           if terms[k] == terms[k] and not abs(a_terms[k] - terms[k]) <= rel * abs(terms[k]) + 1e-4]
    assert not off, off
    assert float(torch.nn.functional.cosine_similarity(a_grads, grads, dim=0)) > cosine


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_stage1_autocast_step_is_finite_and_close_to_fp32(dtype):
    _assert_autocast_step_close(_stage1(WIDE), dtype)
