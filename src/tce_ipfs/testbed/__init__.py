"""The test bed: QEMU guests of the TC-layout test base, the lab LAN, end-to-end runs, benchmarks.

Not shipped to users' machines: used by the tests, `tce-ipfs demo|guest|bench`. May import every
product package (never ``commands`` or ``cli``).
"""
