/// `GET /`: one self-contained HTML page (no external script, style or font) that polls
/// `/status` every two seconds and draws the job state, warnings, and loss, throughput and
/// memory charts on canvases.
public enum StatusPage {
    public static let contentType = "text/html; charset=utf-8"

    public static let html = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><title>ZeroTrain</title>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <style>
    body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
    h1{font-size:1.3em;margin:0 0 .5em} .state{font-weight:600}
    .grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1em}
    .card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.7em}
    canvas{width:100%;height:180px} table{border-collapse:collapse;width:100%}
    td,th{text-align:left;padding:2px 6px;border-bottom:1px solid #eee} .warn{color:#a40}
    </style></head><body>
    <h1>ZeroTrain job: <span id="state" class="state">loading…</span></h1>
    <div id="summary"></div>
    <div id="warnings" class="warn"></div>
    <div class="grid">
    <div class="card"><b>loss</b><canvas id="loss"></canvas></div>
    <div class="card"><b>tokens/s</b><canvas id="tps"></canvas></div>
    <div class="card"><b>device memory (all ranks)</b><canvas id="mem"></canvas></div>
    </div>
    <div class="card" style="margin-top:1em"><b>workers</b><table id="workers"></table></div>
    <script>
    function draw(id, xs, ys, fmt){
      const c=document.getElementById(id), r=c.getBoundingClientRect(), d=window.devicePixelRatio||1;
      c.width=r.width*d; c.height=r.height*d; const g=c.getContext('2d'); g.scale(d,d);
      const w=r.width, h=r.height, pts=[]; for(let i=0;i<xs.length;i++) if(ys[i]!==null&&isFinite(ys[i])) pts.push([xs[i],ys[i]]);
      g.fillStyle='#fff'; g.fillRect(0,0,w,h); if(pts.length===0){g.fillStyle='#888';g.fillText('no data yet',10,20);return;}
      let x0=pts[0][0],x1=pts[pts.length-1][0],y0=Math.min(...pts.map(p=>p[1])),y1=Math.max(...pts.map(p=>p[1]));
      if(x1===x0)x1=x0+1; if(y1===y0){y1+=1;y0-=1;}
      const L=60,B=18,X=x=>L+(x-x0)/(x1-x0)*(w-L-8),Y=y=>h-B-(y-y0)/(y1-y0)*(h-B-8);
      g.strokeStyle='#ccc'; g.beginPath(); g.moveTo(L,4); g.lineTo(L,h-B); g.lineTo(w-4,h-B); g.stroke();
      g.fillStyle='#555'; g.fillText(fmt(y1),2,12); g.fillText(fmt(y0),2,h-B); g.fillText('step '+x0,L,h-4); g.fillText(String(x1),w-40,h-4);
      g.strokeStyle='#1f6feb'; g.lineWidth=1.5; g.beginPath(); pts.forEach((p,i)=>i?g.lineTo(X(p[0]),Y(p[1])):g.moveTo(X(p[0]),Y(p[1]))); g.stroke();
    }
    const num=v=>Math.abs(v)>=1e4?v.toExponential(2):v.toFixed(3), bytes=v=>(v/1048576).toFixed(1)+' MiB';
    function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
    async function refresh(){
      try{
        const s=await (await fetch('status',{cache:'no-store'})).json();
        document.getElementById('state').textContent=s.state;
        document.getElementById('summary').textContent='step '+s.step+' of '+s.total_steps+' · '+s.world_size+' ranks · membership '+s.membership
          +(s.last_checkpoint?' · last checkpoint step '+s.last_checkpoint.step:'')+' · '+s.recoveries.length+' recoveries';
        document.getElementById('warnings').innerHTML=s.warnings.slice(-5).map(w=>'⚠ '+esc(w.message)).join('<br>');
        const xs=s.history.map(p=>p.step+1);
        draw('loss',xs,s.history.map(p=>typeof p.loss==='number'?p.loss:null),num);
        draw('tps',xs,s.history.map(p=>p.tokens_per_second),num);
        draw('mem',xs,s.history.map(p=>p.memory_bytes),bytes);
        document.getElementById('workers').innerHTML='<tr><th>host</th><th>pid</th><th>ranks</th><th>last heard</th><th>memory</th></tr>'
          +s.workers.map(w=>'<tr><td>'+esc(w.host)+'</td><td>'+w.pid+'</td><td>'+w.ranks.join(',')+'</td><td>'+w.last_heartbeat_seconds_ago.toFixed(1)
          +' s ago</td><td>'+bytes(w.memory_bytes)+' (peak '+bytes(w.memory_peak_bytes)+')</td></tr>').join('');
      }catch(e){document.getElementById('state').textContent='coordinator unreachable';}
    }
    refresh(); setInterval(refresh,2000);
    </script></body></html>

    """
}
