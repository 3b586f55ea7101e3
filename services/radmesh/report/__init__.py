"""The report service: findings and a request in, a draft structured report and DICOM out.

``core`` (pure: text and JSON), ``rules`` (published thresholds, each cited),
``normals`` (published normal organ volumes), ``sentences`` (wording), ``aorta``
(the aortic diameter from the label map), ``artifacts`` (seg.dcm, sr.dcm,
labels.nii.gz), ``server`` (ReportService.Generate) and ``client``.
"""
