"""Plans, prescriptions, objectives, the fluence optimiser and the CRT/SFRT/SCART builders."""
