"""The speed levers: channels_last and torch.compile change no numbers, compile failures fall back, the
allocator switch applies. (How much faster each lever is, is measured by benchmarks/, not asserted here.)"""

import copy
import sys

import pytest
import torch
import torch.nn.functional as F

from resnetlab.config import ConfigError, load_config
from resnetlab.layers.stochastic_depth import set_gate_generator
from resnetlab.models.architectures import cifar_resnet
from resnetlab.training.performance import (
    AUTO_COMPILE_MIN_ITERATIONS,
    CompiledBranches,
    CompiledForward,
    prepare_forward,
    should_compile,
    tune_allocator,
)

# float32 convolutions in another layout or a fused kernel sum in another order: a few ulps per layer.
LAYOUT_RTOL = 1e-4


def _loss_and_grads(forward, model, images, labels):
    model.zero_grad(set_to_none=True)
    logits = forward(images)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    return logits.detach(), {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}


def _assert_close(reference, other, rtol=LAYOUT_RTOL):
    scale = reference.abs().max().clamp_min(1e-12)
    assert float((reference - other).abs().max() / scale) < rtol


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 16, 16, generator=generator), torch.randint(0, 10, (8,), generator=generator)


def test_channels_last_gives_the_same_logits_and_gradients(batch):
    images, labels = batch
    torch.manual_seed(0)
    eager = cifar_resnet(8).train()
    nhwc = copy.deepcopy(eager)
    forward = prepare_forward(nhwc, channels_last=True, compile=False)
    assert nhwc.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    logits, grads = _loss_and_grads(eager, eager, images, labels)
    logits_cl, grads_cl = _loss_and_grads(forward, nhwc, images.contiguous(memory_format=torch.channels_last), labels)
    _assert_close(logits, logits_cl)
    for name in grads:
        _assert_close(grads[name], grads_cl[name])


@pytest.mark.skipif(sys.platform == "win32", reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_model_gives_the_eager_outputs_and_gradients(batch):
    images, labels = batch
    torch.manual_seed(0)
    eager = cifar_resnet(8).train()
    compiled_model = copy.deepcopy(eager)
    messages = []
    forward = prepare_forward(compiled_model, channels_last=True, compile=True, log=messages.append)
    logits, grads = _loss_and_grads(eager, eager, images, labels)
    logits_c, grads_c = _loss_and_grads(forward, compiled_model, images.contiguous(memory_format=torch.channels_last),
                                        labels)
    assert forward.failure is None, messages
    _assert_close(logits, logits_c)
    for name in grads:
        _assert_close(grads[name], grads_c[name])
    # BN running statistics are updated by the compiled graph exactly as by the eager one.
    _assert_close(eager.bn1.running_var, compiled_model.bn1.running_var)
    assert int(compiled_model.bn1.num_batches_tracked) == 1
    # The checkpointable state is the model's own: no `_orig_mod.` prefix.
    assert set(compiled_model.state_dict()) == set(eager.state_dict())


@pytest.mark.skipif(sys.platform == "win32", reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_stochastic_depth_drops_the_same_units_and_gives_the_eager_gradients(batch):
    images, labels = batch
    torch.manual_seed(0)
    eager = cifar_resnet(14, stochastic_depth={"p_last": 0.5}).train()
    compiled_model = copy.deepcopy(eager)
    gates, gates_c = torch.Generator(), torch.Generator()
    set_gate_generator(eager, gates)
    set_gate_generator(compiled_model, gates_c)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    forward = prepare_forward(compiled_model, channels_last=True, compile=True)
    assert isinstance(forward, CompiledBranches) and len(forward.units) == 6  # compiled unit by unit
    images_cl = images.contiguous(memory_format=torch.channels_last)
    for step in range(3):  # different gate draws per step: the gates stay in Python, the branches compiled
        gates.manual_seed(step)
        gates_c.manual_seed(step)
        logits, grads = _loss_and_grads(eager, eager, images, labels)
        logits_c, grads_c = _loss_and_grads(forward, compiled_model, images_cl, labels)
        kept = [unit.drop_path.last_kept for unit in eager.residual_units()]
        assert kept == [unit.drop_path.last_kept for unit in compiled_model.residual_units()]
        _assert_close(logits, logits_c)
        for name in grads:
            assert (grads[name] is None) == (grads_c[name] is None), name  # a dropped unit gets no gradient
            if grads[name] is not None:
                _assert_close(grads[name], grads_c[name])
    assert forward.failure is None
    # Units of one shape share a graph: 3 stages of 2 units make at most 4 shapes (first unit of stages 2 and 3).
    assert 1 <= torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 4
    compiled_model.eval()
    with torch.no_grad():  # evaluation runs the eager branches: the same logits as the eager model
        _assert_close(eager.eval()(images), compiled_model(images_cl))


def test_auto_compile_is_for_runs_long_enough_to_pay_for_it():
    assert should_compile(None, AUTO_COMPILE_MIN_ITERATIONS) is True
    assert should_compile(None, AUTO_COMPILE_MIN_ITERATIONS - 1) is False
    assert should_compile(True, 1) is True and should_compile(False, 10**6) is False
    long_run = AUTO_COMPILE_MIN_ITERATIONS
    assert should_compile(None, long_run, cifar_resnet(8)) is True
    # Graph breaks at every unit: batch-mode stochastic depth and checkpointing stay eager unless asked.
    assert should_compile(None, long_run, cifar_resnet(8, stochastic_depth=0.5)) is False
    assert should_compile(None, long_run, cifar_resnet(8, stochastic_depth={"mode": "row"})) is True
    assert should_compile(None, long_run, cifar_resnet(8, checkpoint_segments=2)) is False
    assert should_compile(True, long_run, cifar_resnet(8, stochastic_depth=0.5)) is True


def test_a_failing_compiler_falls_back_to_eager_with_one_message(batch):
    images, _ = batch

    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler found\nlong traceback text")

    model = cifar_resnet(8).eval()
    messages = []
    forward = CompiledForward(model, messages.append, backend=broken_backend)
    with torch.no_grad():
        out = forward(images)
        again = forward(images)
        expected = model(images)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(again, expected)
    assert len(messages) == 1 and "no C++ compiler found" in messages[0] and "eager" in messages[0]
    assert "long traceback" not in messages[0]


def test_compile_fallback_does_not_hide_errors_of_the_model_itself():
    model = cifar_resnet(8).eval()
    forward = CompiledForward(model, lambda message: None)
    with pytest.raises(RuntimeError):
        forward(torch.randn(2, 5, 16, 16))  # 5 channels into a 3-channel stem fails in eager too


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_allocator_tuning_applies_on_glibc_and_is_idempotent():
    assert tune_allocator() is True
    assert tune_allocator() is True


def test_training_switches_are_validated_and_have_the_documented_defaults():
    config = load_config()
    assert config.train.channels_last is True and config.train.compile is None  # auto: long runs compile
    assert config.train.precision == "auto" and config.train.tune_allocator is True  # bf16 where it is fast
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, ["train.precision=fp16"])
    with pytest.raises(ConfigError, match="model.checkpoint_segments"):
        load_config(None, ["model.checkpoint_segments=-1"])
    with pytest.raises(ConfigError, match="train.compile"):
        load_config(None, ["train.compile=maybe"])


def test_model_checkpoint_segments_reaches_the_trained_and_the_reloaded_model(tmp_path):
    # Through the trainer and back through `load_trained_model`, not a model rebuilt here: either side dropping
    # the option would show.
    from resnetlab.training.inference import load_trained_model
    from resnetlab.training.session import train
    from resnetlab.training.trainer import build_run

    overrides = ["model.name=resnet56", "model.checkpoint_segments=3", "data.synthetic_train_size=48",
                 "data.synthetic_test_size=16", "data.validation_size=16", "train.batch_size=16",
                 "train.iterations=1", f"run.out_dir={tmp_path}", "run.name=run"]
    config = load_config(None, overrides)
    assert build_run(config, log=lambda _: None).model.checkpoint_segments == 3
    train(config, log=lambda _: None)
    assert load_trained_model(tmp_path / "run").model.checkpoint_segments == 3


@pytest.mark.parametrize("options", [{"depth": 20}, {"depth": 20, "placement": "full_preact"},
                                     {"depth": 29, "block": "bottleneck"}], ids=["option A", "preact", "bottleneck"])
def test_channels_last_gradients_stay_channels_last_through_every_unit(options):
    # Option A's subsampling and the global pool build NCHW gradients unless told otherwise; one NCHW gradient
    # sends the BN, ReLU and convolution backward passes after it onto slower mixed-layout kernels.
    model = cifar_resnet(**options).train().to(memory_format=torch.channels_last)
    layouts = []

    def record(module, inputs, output):
        if output.dim() == 4 and output.shape[-1] > 1:
            output.register_hook(lambda grad: layouts.append((type(module).__name__,
                                                              grad.is_contiguous(memory_format=torch.channels_last))))

    for module in model.modules():
        if module is not model:
            module.register_forward_hook(record)
    images = torch.randn(4, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    F.cross_entropy(model(images), torch.zeros(4, dtype=torch.long)).backward()
    assert len(layouts) > 20
    assert [name for name, channels_last in layouts if not channels_last] == []


def test_keep_gradient_layout_is_a_no_op_outside_training():
    from resnetlab.layers.memory_format import keep_gradient_layout

    tensor = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert keep_gradient_layout(tensor) is tensor  # no grad required
    with torch.no_grad():
        assert keep_gradient_layout(tensor.requires_grad_()) is tensor
