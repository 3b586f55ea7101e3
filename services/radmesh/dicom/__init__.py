"""DICOM in and out: CT series in (:mod:`.series`), CT series, DICOM SEG and SR out.

- :func:`radmesh.dicom.series.read_dicom_series` — a folder, .zip or file of CT slices → :class:`DicomSource`
- :func:`radmesh.dicom.write_ct.write_ct_series` — a Volume → CT Image Storage files
- :func:`radmesh.dicom.seg.build_seg` — a label map → DICOM SEG (highdicom)
- :func:`radmesh.dicom.sr.build_sr` — measurement findings → TID 1500 Comprehensive 3D SR (highdicom)
- :func:`radmesh.dicom.source.source_from_headers` — pixel-less slice headers (as sent over gRPC) → DicomSource
- :mod:`radmesh.dicom.codes` — the SNOMED CT / DCM / UCUM codes per vocabulary class

Submodules are imported on use (highdicom is only loaded by ``seg`` and ``sr``).
See docs/dicom.md.
"""
