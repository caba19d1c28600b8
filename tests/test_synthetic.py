"""The built-in synthetic data set: shapes, determinism, balance, speed, and that it needs a conv net.

The two learning tests pin the data set's purpose: a linear model on raw pixels stays near chance (measured ~13%),
a three-layer conv net with global pooling learns it in two epochs on 3000 images (measured ~92%).
"""

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnetlab.data.augment import random_crop_flip
from resnetlab.data.synthetic import CLASSES, IMAGE_SIZE, NUM_CLASSES, make_synthetic

CHANCE = 1.0 / NUM_CLASSES


@contextlib.contextmanager
def one_torch_thread():
    """These runs are small; on a busy 2-core machine two OpenMP threads spin-wait (measured up to 10x slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(num_train=3000, num_test=1000, seed=0)


def as_normalized_nchw(images, mean=None, std=None):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    if mean is None:
        mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    return (x - mean) / std, mean, std


def test_shapes_dtypes_and_class_names():
    train_x, train_y, test_x, test_y, classes = make_synthetic(num_train=50, num_test=20, seed=0)
    assert train_x.shape == (50, IMAGE_SIZE, IMAGE_SIZE, 3) and test_x.shape == (20, 32, 32, 3)
    assert train_x.dtype == test_x.dtype == np.uint8
    assert train_y.shape == (50,) and test_y.shape == (20,) and train_y.dtype == test_y.dtype == np.int64
    assert classes == CLASSES and len(set(classes)) == NUM_CLASSES
    assert train_y.min() >= 0 and train_y.max() < NUM_CLASSES
    assert train_x.std() > 20  # not blank: pixels use the range
    empty = make_synthetic(num_train=0, num_test=0)
    assert empty.train_images.shape == (0, 32, 32, 3) and empty.test_labels.shape == (0,)


def test_deterministic_for_a_seed_and_different_across_seeds():
    first, again = make_synthetic(200, 100, seed=5), make_synthetic(200, 100, seed=5)
    for a, b in zip(first[:4], again[:4]):
        assert np.array_equal(a, b)
    other = make_synthetic(200, 100, seed=6)
    assert not np.array_equal(first.train_images, other.train_images)
    assert not np.array_equal(first.train_labels, other.train_labels)
    # The test split is its own stream: it does not move when the training split grows.
    assert np.array_equal(make_synthetic(500, 100, seed=5).test_images, first.test_images)
    assert not np.array_equal(first.train_images[:100], first.test_images)


def test_classes_are_balanced_and_shuffled():
    data = make_synthetic(num_train=1000, num_test=105, seed=1)
    assert np.bincount(data.train_labels, minlength=NUM_CLASSES).tolist() == [100] * NUM_CLASSES
    test_counts = np.bincount(data.test_labels, minlength=NUM_CLASSES)
    assert test_counts.max() - test_counts.min() <= 1 and test_counts.sum() == 105
    assert not np.array_equal(data.train_labels, np.arange(1000) % NUM_CLASSES)


def test_every_class_has_the_same_mean_image(data):
    # Position, colours and phase do not depend on the class, so no class stands out in its mean: per quadrant of
    # the image and channel, each class mean lies within 5 standard errors of the overall mean.
    n = len(data.train_images)
    quadrants = data.train_images.astype(np.float64).reshape(n, 2, 16, 2, 16, 3).mean((2, 4))  # (N, 2, 2, 3)
    overall = quadrants.mean(0)
    for label in range(NUM_CLASSES):
        members = quadrants[data.train_labels == label]
        standard_error = quadrants.std(0) / np.sqrt(len(members))
        assert (np.abs(members.mean(0) - overall) / standard_error).max() < 5, CLASSES[label]


def linear_model_accuracies(data, num_train=2000):
    """(train, test) accuracy of logistic regression on normalised raw pixels, 100 full-batch L-BFGS iterations."""
    train_x, mean, std = as_normalized_nchw(data.train_images[:num_train])
    test_x, _, _ = as_normalized_nchw(data.test_images, mean, std)
    train_x, test_x = train_x.flatten(1), test_x.flatten(1)
    train_y = torch.from_numpy(data.train_labels[:num_train])
    torch.manual_seed(0)
    model = nn.Linear(train_x.shape[1], NUM_CLASSES)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=100, history_size=10,
                                  line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(train_x), train_y) + 1e-3 * model.weight.square().sum()
        loss.backward()
        return loss

    with one_torch_thread():
        optimizer.step(closure)
        with torch.no_grad():
            train_accuracy = (model(train_x).argmax(1) == train_y).float().mean().item()
            test_accuracy = (model(test_x).argmax(1).numpy() == data.test_labels).mean()
    return train_accuracy, test_accuracy


def small_conv_net():
    """Three conv-BN-ReLU layers (32, 16, 8 px) and global average pooling: oriented filters, pooled anywhere."""
    layers = []
    for c_in, c_out, stride in ((3, 16, 1), (16, 32, 2), (32, 64, 2)):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, NUM_CLASSES))


def conv_net_test_accuracy(data, epochs=2, batch=32, seed=0):
    """Test accuracy of small_conv_net after `epochs` of Adam (one-cycle, peak lr 0.01) with crop-flip augmentation."""
    train_x, mean, std = as_normalized_nchw(data.train_images)
    test_x, _, _ = as_normalized_nchw(data.test_images, mean, std)
    train_y = torch.from_numpy(data.train_labels)
    torch.manual_seed(seed)
    model = small_conv_net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2,
                                                   total_steps=epochs * -(-len(train_x) // batch))
    generator = torch.Generator().manual_seed(seed)
    with one_torch_thread():
        for _ in range(epochs):
            order = torch.randperm(len(train_x), generator=generator)
            for start in range(0, len(train_x), batch):
                index = order[start:start + batch]
                # The paper's augmentation: the classes are closed under crops and flips, so it must not hurt.
                images = random_crop_flip(train_x[index], generator=generator)
                loss = F.cross_entropy(model(images), train_y[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        model.eval()
        with torch.no_grad():
            return (model(test_x).argmax(1).numpy() == data.test_labels).mean()


def test_a_linear_model_on_raw_pixels_stays_near_chance(data):
    train_accuracy, test_accuracy = linear_model_accuracies(data)
    assert train_accuracy > 0.9  # the optimizer worked: it memorises the training images ...
    assert test_accuracy < 0.35  # ... and learns nothing that carries over (measured 0.13-0.16; chance 0.10)


def test_a_small_conv_net_learns_it_in_two_epochs(data):
    assert conv_net_test_accuracy(data) > 0.8  # measured 0.92-0.95 over data seeds 0-4; chance 0.10
