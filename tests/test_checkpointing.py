"""Activation checkpointing by segments (`ResNet.checkpoint_segments`): same training step, less saved memory.

Equality is asserted bitwise (`torch.equal`): the checkpointed step runs the same CPU kernels on the same
inputs in the same order as the plain one, and the rerun only rebuilds tensors for backward, so any
difference at all would mean a different gate decision, mask or normalisation, not rounding.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

import resnetlab
from resnetlab.layers.stochastic_depth import (
    _GATE_SESSION,
    DropPath,
    GateTape,
    record_gates,
    replay_gates,
    set_gate_generator,
)
from resnetlab.models import checkpointing, cifar_resnet, get_model_spec
from resnetlab.models.checkpointing import scratch_running_stats, split_evenly
from resnetlab.models.complexity import build_on_meta
from resnetlab.models.fusion import fuse_for_inference

SIZE = 8  # CIFAR nets pool globally, so 8x8 inputs keep the test fast


@pytest.fixture(autouse=True)
def _one_thread():
    # Tensors this small gain nothing from intra-op threads, which only wait on each other on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, SIZE, SIZE, generator=generator), torch.arange(batch) % 10


def _gates(model):
    return [module for module in model.modules() if isinstance(module, DropPath)]


def _train(model, steps=2, gate_generator=True):
    """``steps`` SGD steps, reseeding every generator per step as the trainer does; returns what to compare."""
    model.train()
    record = {"loss": [], "kept": []}
    for step in range(steps):
        generator = torch.Generator().manual_seed(100 + step) if gate_generator else None
        set_gate_generator(model, generator)
        torch.manual_seed(7 + step)  # row masks draw from the default generator
        x, target = _inputs(seed=step)
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), target)
        loss.backward()
        record["loss"].append(loss.detach())
        record["kept"].append([gate.last_kept for gate in _gates(model)])
        record.setdefault("generator_state", []).append(
            generator.get_state() if generator is not None else torch.get_rng_state())
        if step < steps - 1:
            with torch.no_grad():  # plain SGD (torch.optim's first use costs seconds of imports)
                for p in model.parameters():
                    if p.grad is not None:
                        p.sub_(0.1 * p.grad)
    record["grads"] = {name: p.grad for name, p in model.named_parameters()}
    record["state"] = model.state_dict()  # parameters, running statistics and num_batches_tracked
    return record


def _assert_same(plain, checkpointed):
    assert all(torch.equal(a, b) for a, b in zip(plain["loss"], checkpointed["loss"]))
    assert plain["kept"] == checkpointed["kept"]
    # A gate generator drawn again on the rerun would have moved on.
    assert all(torch.equal(a, b) for a, b in zip(plain["generator_state"], checkpointed["generator_state"]))
    assert plain["grads"].keys() == checkpointed["grads"].keys()
    for name, grad in plain["grads"].items():
        other = checkpointed["grads"][name]
        assert (grad is None) == (other is None), name  # a dropped unit gets no gradient in both
        assert grad is None or torch.equal(grad, other), name
    assert plain["state"].keys() == checkpointed["state"].keys()
    for name, value in plain["state"].items():
        assert torch.equal(value, checkpointed["state"][name]), name


def _pair(model, segments):
    checkpointed = copy.deepcopy(model)
    checkpointed.checkpoint_segments = segments
    return model, checkpointed


MODELS = {
    "resnet20": lambda: resnetlab.create_model("resnet20"),
    "preact20": lambda: cifar_resnet(20, placement="full_preact"),
    "bottleneck29": lambda: cifar_resnet(29, "bottleneck"),
    "plain20": lambda: resnetlab.create_model("plain20"),
    "reference_bn": lambda: cifar_resnet(20, placement="full_preact", norm="reference"),
    "sd_batch": lambda: resnetlab.create_model("resnet20", stochastic_depth={"p_last": 0.5}),
    "sd_batch_preact_reference_bn": lambda: cifar_resnet(20, placement="full_preact", norm="reference",
                                                         stochastic_depth={"p_last": 0.5}),
    "sd_row": lambda: resnetlab.create_model("resnet20", stochastic_depth={"p_last": 0.5, "mode": "row",
                                                                           "scaling": "train"}),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_a_checkpointed_step_is_bitwise_the_plain_one(name):
    torch.manual_seed(0)
    plain, checkpointed = _pair(MODELS[name](), segments=4)
    before = copy.deepcopy(plain.state_dict())
    reference, result = _train(plain), _train(checkpointed)
    _assert_same(reference, result)
    # Running statistics moved exactly once per step (twice would break the equality above too); with
    # stochastic depth a dropped unit's BNs skip the step, as they do without checkpointing.
    counters = [int(v) for k, v in result["state"].items() if k.endswith("num_batches_tracked")]
    assert counters[0] == 2 and set(counters) <= ({1, 2} if name.startswith("sd_batch") else {2})
    assert not torch.equal(before["bn1.running_mean"], result["state"]["bn1.running_mean"])
    if name.startswith("sd_batch"):
        decisions = [kept for step in result["kept"] for kept in step]
        assert False in decisions and True in decisions  # some units really were dropped, some kept


def test_batch_gates_on_the_default_generator_repeat_too():
    torch.manual_seed(0)
    plain, checkpointed = _pair(MODELS["sd_batch"](), segments=3)
    reference, result = _train(plain, gate_generator=False), _train(checkpointed, gate_generator=False)
    _assert_same(reference, result)  # generator_state is the default generator's state here


def test_autocast_and_channels_last_are_replayed_too():
    torch.manual_seed(0)
    plain, checkpointed = _pair(MODELS["sd_batch"](), segments=3)
    x, target = _inputs()
    results = []
    for model in (plain, checkpointed):
        model.to(memory_format=torch.channels_last)
        set_gate_generator(model, torch.Generator().manual_seed(5))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x.to(memory_format=torch.channels_last)), target)
        loss.backward()
        results.append((loss, [p.grad for p in model.parameters()], list(model.buffers())))
    (loss_a, grads_a, buffers_a), (loss_b, grads_b, buffers_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert all(torch.equal(a, b) for a, b in zip(buffers_a, buffers_b))


def test_more_segments_than_units_runs_one_unit_per_chunk(monkeypatch):
    torch.manual_seed(0)
    plain, checkpointed = _pair(MODELS["sd_batch"](), segments=50)
    calls = []
    real = checkpointing.checkpoint
    monkeypatch.setattr(checkpointing, "checkpoint", lambda fn, *a, **k: calls.append(fn) or real(fn, *a, **k))
    result = _train(checkpointed, steps=1)
    _assert_same(_train(plain, steps=1), result)
    units = list(checkpointed.units())
    assert len(calls) == len(units) == 9
    assert [list(fn.args[0]) for fn in calls] == [[unit] for unit in units]


def test_chunks_are_contiguous_and_nearly_equal():
    items = list(range(27))
    chunks = split_evenly(items, 4)
    assert [len(c) for c in chunks] == [7, 7, 7, 6]
    assert sum(chunks, []) == items
    assert split_evenly(items, 1) == [items]
    assert split_evenly(items[:3], 5) == [[0], [1], [2]]
    for segments in range(1, 30):
        sizes = [len(c) for c in split_evenly(items, segments)]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 27 and len(sizes) == min(segments, 27)


def test_eval_mode_and_no_grad_run_as_before(monkeypatch):
    torch.manual_seed(0)
    plain, checkpointed = _pair(MODELS["sd_batch"](), segments=4)
    monkeypatch.setattr(checkpointing, "checkpoint", lambda *a, **k: pytest.fail("checkpoint called"))
    x, _ = _inputs()
    plain.eval(), checkpointed.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), checkpointed(x))
    assert torch.equal(plain(x), checkpointed(x))  # eval with grad enabled: no checkpointing either
    plain.train(), checkpointed.train()
    set_gate_generator(plain, torch.Generator().manual_seed(3))
    set_gate_generator(checkpointed, torch.Generator().manual_seed(3))
    with torch.no_grad():  # training-mode BN under no_grad still updates its statistics, once
        assert torch.equal(plain(x), checkpointed(x))
    for (name, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values()):
        assert torch.equal(a, b), name


def test_fusion_is_unaffected():
    torch.manual_seed(0)
    plain, checkpointed = _pair(MODELS["resnet20"](), segments=4)
    _train(plain, steps=1), _train(checkpointed, steps=1)  # non-trivial running statistics
    x, _ = _inputs()
    fused_plain, fused = fuse_for_inference(copy.deepcopy(plain)), fuse_for_inference(copy.deepcopy(checkpointed))
    assert not fused.training and fused.checkpoint_segments == 4
    with torch.no_grad():
        assert torch.equal(fused_plain(x), fused(x))
        torch.testing.assert_close(fused(x), checkpointed.eval()(x), rtol=1e-4, atol=1e-4)


def test_a_second_backward_replays_the_same_decisions():
    # retain_graph=True makes checkpointing rerun every chunk once per backward pass.
    torch.manual_seed(0)
    plain, checkpointed = _pair(MODELS["sd_batch"](), segments=3)
    x, target = _inputs()
    for model in (plain, checkpointed):
        set_gate_generator(model, torch.Generator().manual_seed(11))
        loss = F.cross_entropy(model(x), target)
        loss.backward(retain_graph=True)
        loss.backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad), name
    for (name, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values()):
        assert torch.equal(a, b), name


def _saved_activation_bytes(model, monkeypatch):
    """Bytes of the distinct non-parameter tensors kept for backward by one training forward pass, counting
    the chunk inputs that checkpointing keeps itself."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    storages = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()

    real = checkpointing.checkpoint

    def counting_checkpoint(fn, x, **kwargs):
        keep(x)
        return real(fn, x, **kwargs)

    monkeypatch.setattr(checkpointing, "checkpoint", counting_checkpoint)

    def pack(tensor):
        keep(tensor)
        return tensor

    x, target = _inputs(batch=4)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = F.cross_entropy(model.train()(x), target)
    loss.backward()  # the graph is sound
    return sum(storages.values())


def test_checkpointing_saves_far_fewer_activations(monkeypatch):
    torch.manual_seed(0)
    plain, checkpointed = _pair(resnetlab.create_model("resnet56"), segments=4)
    plain_bytes = _saved_activation_bytes(plain, monkeypatch)
    checkpointed_bytes = _saved_activation_bytes(checkpointed, monkeypatch)
    assert checkpointed_bytes < 0.5 * plain_bytes
    assert checkpointed_bytes < 0.2 * plain_bytes  # in fact: the stem, 4 chunk inputs and the head


@pytest.mark.parametrize("bad", [-1, 1.5, "4", None, True])
def test_bad_segment_counts_are_rejected(bad):
    with pytest.raises(ValueError, match="checkpoint_segments must be an int >= 0"):
        resnetlab.create_model("resnet20", checkpoint_segments=bad)
    model = resnetlab.create_model("resnet20", checkpoint_segments=2)
    with pytest.raises(ValueError, match="checkpoint_segments"):
        model.checkpoint_segments = bad
    assert model.checkpoint_segments == 2


def test_the_option_flows_through_the_registry_and_repr():
    assert resnetlab.create_model("resnet110", checkpoint_segments=6).checkpoint_segments == 6
    deep = build_on_meta("preact_resnet1001", checkpoint_segments=18)  # shapes only: fast
    assert deep.checkpoint_segments == 18 and len(list(deep.units())) == 333
    assert "checkpoint_segments=18" in repr(deep).splitlines()[1]
    assert "checkpoint_segments" in get_model_spec("resnet50").options()
    default = resnetlab.create_model("resnet20")
    assert default.checkpoint_segments == 0 and "checkpoint_segments" not in repr(default)
    assert "checkpoint_segments" not in default.state_dict()
    default.checkpoint_segments = 3
    assert default.checkpoint_segments == 3 and "checkpoint_segments=3" in repr(default)
    default.checkpoint_segments = 0  # off again


def test_the_rerun_contexts_clean_up_after_an_exception():
    model = resnetlab.create_model("resnet20", stochastic_depth={"p_last": 0.5}).train()
    units = list(model.units())
    before = [(module, name, buffer, buffer.clone()) for unit in units for module in unit.modules()
              for name, buffer in module.named_buffers(recurse=False)]
    assert before
    tape, x = GateTape(), torch.randn(2, 16, 4, 4)
    with record_gates(tape), torch.no_grad():
        units[0](x)  # updates the running statistics once: the values compared below are after this
    before = [(module, name, buffer, buffer.clone()) for module, name, buffer, _ in before]
    with pytest.raises(KeyError):
        with replay_gates(tape), scratch_running_stats(units):
            assert _GATE_SESSION.get() is not None
            assert units[0].bn1.running_mean is not before[0][2]  # a scratch copy
            units[0](x)  # a training-mode forward updates the scratch copies only
            raise KeyError("boom")
    assert _GATE_SESSION.get() is None
    for module, name, buffer, value in before:
        assert getattr(module, name) is buffer and torch.equal(buffer, value), name


def test_replay_repeats_in_order_and_refuses_extra_draws():
    gate = DropPath(0.5).train()
    gate.generator = torch.Generator().manual_seed(0)
    tape = GateTape()
    with record_gates(tape):
        drawn = [gate.skip_branch() for _ in range(6)]
    assert len(set(drawn)) == 2  # both outcomes occur, so the replay below is a real check
    state = gate.generator.get_state()
    with replay_gates(tape):
        assert [gate.skip_branch() for _ in range(6)] == drawn
        with pytest.raises(RuntimeError, match="drawn more often"):
            gate.skip_branch()
    assert torch.equal(gate.generator.get_state(), state)  # replaying draws nothing from the gate's generator
    assert _GATE_SESSION.get() is None
