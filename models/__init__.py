"""perfsim's model zoo: real, trainable PyTorch networks.

Installed as ``perfsim.models``. Importing this package is cheap; each network's
module imports torch. The registry of names, input shapes and sources is
``perfsim.frontends.zoo``.
"""
