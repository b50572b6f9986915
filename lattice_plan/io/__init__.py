"""Input and output: DICOM CT, RTSTRUCT, RTDOSE, RTPLAN; vertex tables; plan specs; atomic writes."""
