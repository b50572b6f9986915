"""DVHs, dose metrics, PVDR and SFRT metrics, radiobiology, plan comparison and gamma."""
