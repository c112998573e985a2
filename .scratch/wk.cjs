for (const f of ['import-task', 'export-task']) {
  try { const m = require(`/work/main/src/worker/${f}.ts`); console.log('ok', f, Object.keys(m)) } catch (e) { console.log('fail', f, e.code, e.message.slice(0, 600)) }
}
