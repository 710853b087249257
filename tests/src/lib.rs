//! Harness for the black-box tests: see tests/tests/.
