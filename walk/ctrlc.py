import subprocess,sys,time,signal,os
cmd=sys.argv[2:]; delay=float(sys.argv[1])
p=subprocess.Popen(cmd,stdout=subprocess.PIPE,stderr=subprocess.PIPE,text=True,start_new_session=True)
time.sleep(delay); os.killpg(p.pid,signal.SIGINT); t=time.monotonic()
out,err=p.communicate(); print(f"rc={p.returncode} stopped {time.monotonic()-t:.2f}s after SIGINT"); print(out); print(err)
