"""Farm jobs on Open Job Description: the job templates (``backend/farm/openjd/*.yaml``, package
data), the per-chunk render command and the job-bundle writer (``emo-avatar farm-bundle``)."""
