"""proxylink: links Defender DeviceNetworkEvents proxy legs to their real destinations.

The code lives in the repository's top-level `jobs/`, `transforms/` and `expectations/`
folders; this package names them `proxylink.jobs`, `proxylink.transforms` and
`proxylink.expectations` (the folders here are links to them), so that an install never puts
packages named `jobs` or `transforms` into site-packages.
"""
