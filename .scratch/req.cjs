try { require('/work/main/src/worker/import-task.ts'); console.log('ok') } catch (e) { console.log('fail', e.code, e.message.slice(0, 300)) }
try { require('/work/main/src/worker/export-task.ts'); console.log('ok export') } catch (e) { console.log('fail export', e.code, e.message.slice(0, 300)) }
