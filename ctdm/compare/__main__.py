"""`python -m ctdm.compare PATH... [options]` (ctdm.compare.report.main)."""

from ctdm.compare.report import main

main()
