"""Scoring separations: BSSEval v4 (bsseval), the evaluation runner and its reports."""
