"""Numbers from the four papers (and torchvision's published counts), as named constants for the tests.

Sources: ../shared/PAPERS.md, which transcribes the papers' tables.
"""

# He et al. 2015, Table 6: CIFAR-10 parameters in millions, at the paper's rounding (0.01M below 1M, else 0.1M).
HE2015_TABLE6_PARAMS_M = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85,
                          "resnet110": 1.7, "resnet1202": 19.4}
# He et al. 2015, Table 6: CIFAR-10 test error in percent (ResNet-110: best of 5 runs; mean 6.61 +- 0.16).
HE2015_TABLE6_CIFAR10_ERROR = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97,
                               "resnet110": 6.43, "resnet1202": 7.93}

# He et al. 2016: CIFAR bottleneck nets of depth 9n+2. ResNet-164 has 1.7M parameters, ResNet-1001 10.2M.
# The 10.2M counts convolution and fc weights only: with BN's gamma and beta the count is 10.33M.
HE2016_PARAMS_M = {"preact_resnet164": 1.7, "preact_resnet1001": 10.2}
HE2016_PREACT_RESNET110_PARAMS_M = 1.7

# torchvision's published parameter counts of the ImageNet nets (torchvision layout, 1000 classes).
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "resnet101": 44_549_160, "resnet152": 60_192_808}

# He et al. 2015, Table 1: multiply-adds (G) at 224x224 for the paper's v1 (stride on the bottleneck's 1x1),
# given to one decimal; torchvision's v1.5 counts (stride on the 3x3), given to two decimals.
HE2015_TABLE1_GMACS_V1 = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}
TORCHVISION_GMACS_V15 = {"resnet18": 1.81, "resnet34": 3.66, "resnet50": 4.09, "resnet101": 7.80, "resnet152": 11.51}

# Huang et al. 2016: linear decay p_l = 1 - l/L (1 - p_L); E[L~] = sum p_l = (3L - 1)/4 for p_L = 0.5,
# "about 40 residual blocks" for ResNet-110 (L = 54 units).
RESNET110_RESIDUAL_UNITS = 54
STOCHASTIC_DEPTH_P_LAST = 0.5
RESNET110_EXPECTED_ACTIVE_UNITS = (3 * RESNET110_RESIDUAL_UNITS - 1) / 4  # 40.25

# Ioffe & Szegedy 2015 (our reference layer vs torch's): agreement in float32.
BATCHNORM_FLOAT32_TOLERANCE = 1e-5

# He et al. 2016, Table 1 (ResNet-110, CIFAR-10 error %, None = "fail", above 20%) and Table 2 (110 / 164).
HE2016_TABLE1 = {
    "original": 6.61,
    "constant_scaling_0_1": None, "constant_scaling_05_1": None, "constant_scaling_05_05": 12.35,
    "exclusive_gating_0": None, "exclusive_gating_m6": 8.70, "exclusive_gating_m7": 9.81,
    "shortcut_only_gating_0": 12.86, "shortcut_only_gating_m6": 6.91,
    "conv1x1": 12.22, "dropout_05": None,
}
HE2016_TABLE2 = {
    "original": (6.61, 5.93), "bn_after_add": (8.17, 6.50), "relu_before_add": (7.84, 6.14),
    "relu_only_preact": (6.71, 5.91), "full_preact": (6.37, 5.46),
}
