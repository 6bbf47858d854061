# Regenerates the flag tables in docs/configuration.md from `authz <cmd> --help`.
# Run by `make docs` after `make build`; cmd/authz/docs_test.go fails when they drift.
import sys,re,subprocess
def table(cmd):
    out=subprocess.run(['bin/authz',*cmd.split(),'--help'],capture_output=True,text=True).stdout
    lines=out[out.index('Flags:'):].splitlines()[1:]
    rows=['| flag | environment | default | meaning |','| --- | --- | --- | --- |']
    alias={'redis-url':', `REDIS_SESSION_URL`','session-secret':', `SESSION_SECRET`'}
    for l in lines:
        if '--' not in l or 'help for' in l: continue
        m=re.match(r'\s+--(\S+) (\S+)?\s{2,}(.*)',l)
        if not m:
            m=re.match(r'\s+--(\S+)\s+(.*)',l); name,desc=m.group(1),m.group(2)
        else:
            name,typ,desc=m.groups()
        d=re.search(r' \(default (.*)\)$',desc); default=''
        if d: default=d.group(1).strip('"'); desc=desc[:d.start()]
        env='AUTHZ_'+name.upper().replace('-','_')
        rows.append(f'| `--{name}` | `{env}`{alias.get(name,"")} | {"`"+default+"`" if default else "—"} | {desc} |')
    return '\n'.join(rows)
doc=open('docs/configuration.md').read()
for cmd in ['serve','logout','session show','token create','token revoke','token list']:
    start=f'<!-- flags:{cmd} -->'; end=f'<!-- /flags:{cmd} -->'
    i=doc.index(start)+len(start); j=doc.index(end)
    doc=doc[:i]+'\n'+table(cmd)+'\n'+doc[j:]
open('docs/configuration.md','w').write(doc)
