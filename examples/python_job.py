%framework=python
%env=GREETING=hello
%onInterrupt=detach
# A single Python process (a batch/v1 Job on the cluster). %env sets
# variables; %onInterrupt=detach leaves the job running when the cell is
# interrupted (%jobs, %logs NAME, %attach NAME and %delete NAME find it).
import os
import platform

print(f"{os.environ['GREETING']} from {os.environ['HOSTNAME']} (Python {platform.python_version()})")
